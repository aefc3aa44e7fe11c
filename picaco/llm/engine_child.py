"""`python -m picaco.llm.engine_child <llama_cpp.server flags>`: llama.cpp's server, ended with its parent.

The engine runs in a session of its own (so a Ctrl-C reaches picaco, which stops it in order), which
also means nothing ends it if picaco is killed with -9. A daemon thread watches the parent process id
and ends the engine when the parent is gone, so a killed run leaves no engine behind holding memory.

It also makes log-probs affordable: llama-cpp-python 0.3.36 sorts the whole vocabulary in Python, for every
token it reports a log-prob for, to keep its top `logprobs` (0.06 s per token quiet, 0.4 s at load 15 for
SmolLM2's 49k tokens), which made scoring a 300-token prompt take minutes. `_top_k_sorted` stands in for
`sorted` inside llama_cpp.llama for that one call and returns only the top entries, in the same order.
"""

from __future__ import annotations

import builtins
import os
import runpy
import sys
import threading
import time
from typing import Any, cast

import numpy as np


def _watch_parent(parent: int, every_s: float = 1.0) -> None:
    while True:
        time.sleep(every_s)
        if os.getppid() != parent:  # re-parented: the process that started us is gone
            os._exit(0)


def _top_k_sorted(iterable, *, key=None, reverse=False):
    """`sorted` for llama_cpp.llama: its only call with a zip of (log-probs row, range) and reverse=True is
    the per-token top-`logprobs` sort in `_create_completion`, which then keeps `[:logprobs]`; that call
    gets the first max(logprobs, 1) entries of the same order (value, then index, both descending), every
    other call the builtin."""
    caller = sys._getframe(1)
    k = caller.f_locals.get("logprobs") if caller.f_code.co_name == "_create_completion" else None
    if key is not None or not reverse or not isinstance(iterable, zip) or not isinstance(k, int):
        return builtins.sorted(iterable, key=key, reverse=reverse)
    values = _untouched_row(iterable)
    pairs = None
    if values is None:
        pairs = list(iterable)
        values = np.fromiter((v for v, _ in pairs), dtype=np.float64, count=len(pairs))
    k = min(max(k, 1), len(values))
    kth = np.partition(values, len(values) - k)[len(values) - k]  # the k-th largest value
    top = np.nonzero(values >= kth)[0]  # every entry tied with it too, so ties are broken as sorted does
    order = top[np.lexsort((-top, -values[top]))][:k]  # value descending, ties: index descending
    return [(values[i], int(i)) if pairs is None else pairs[i] for i in order]


def _untouched_row(pairs: zip):
    """The array of `zip(row, range(len(row)))` when nothing of it was consumed yet, else None (read from the
    zip's pickling state: walking 49k numpy scalars in Python is what costs)."""
    try:
        _, (rows, indices) = cast(Any, pairs.__reduce__())
        _, (row,), at = cast(Any, rows.__reduce__())
        _, (span,), at2 = cast(Any, indices.__reduce__())
    except (TypeError, ValueError):
        return None
    if not isinstance(row, np.ndarray) or row.ndim != 1 or at or at2 or span != range(len(row)):
        return None
    return row


def main() -> None:
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True, name="parent-watch").start()
    import llama_cpp.llama  # imported here: the engine's own process, the only one that needs it

    setattr(llama_cpp.llama, "sorted", _top_k_sorted)  # a module global shadows the builtin inside llama_cpp.llama
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
