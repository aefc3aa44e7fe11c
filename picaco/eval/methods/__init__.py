"""The evaluated methods: the paper's nine baselines (App. C.3), the vanilla query Q and PICACO itself,
one file each. `METHODS` maps a method id (see picaco.eval.config.METHOD_LABELS) to its class."""

from __future__ import annotations

from picaco.eval.methods.base import EvalContext, Method
from picaco.eval.methods.cicl import CICL
from picaco.eval.methods.modular import Modular
from picaco.eval.methods.mp_system import MPSystem1, MPSystem2
from picaco.eval.methods.opro import Opro
from picaco.eval.methods.picaco import Picaco
from picaco.eval.methods.q import Q
from picaco.eval.methods.q_if import QIF
from picaco.eval.methods.q_if_cot import QIFCoT
from picaco.eval.methods.urial import Urial
from picaco.eval.methods.urial_sum import UrialSum

METHODS: dict[str, type[Method]] = {cls.id: cls for cls in (
    Q, QIF, QIFCoT, Urial, UrialSum, MPSystem1, MPSystem2, Modular, Opro, CICL, Picaco)}

__all__ = ["METHODS", "EvalContext", "Method"]
