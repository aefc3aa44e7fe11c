"""The sim world registry: the one place a world name (or a world config) becomes a world.

Every way in goes through `make_world`: the in-process `sim` provider (option `world`, options
`world_<field>` as `overrides`), `picaco sim-server --world`, and code and tests that build a world.

    make_world("values")                      # the simulated value world (picaco.sim.world)
    make_world("values-null")                 # the same with the null optimizer
    make_world("values-harm-flipped")         # the same, its judge answering harm prompts on the wrong scale
    make_world("echo")                        # the engine's plain world
    make_world("values", {"judge_noise": 0})  # WorldConfig fields over a named world's defaults
    make_world(WorldConfig(...)) / make_world({"judge_noise": 0})   # a config, or a mapping of its fields

Anything else is a ConfigError of one line naming the world or the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from picaco.base.errors import ConfigError
from picaco.sim.engine import EchoWorld
from picaco.sim.world import ValueWorld
from picaco.sim.world_config import WorldConfig

# name -> the WorldConfig fields it sets; None: not a value world
_NAMED: dict[str, dict[str, Any] | None] = {"values": {}, "values-null": {"null_optimizer": True},
                                            "values-harm-flipped": {"judge_harm_flipped": True}, "echo": None}
WORLD_NAMES = tuple(_NAMED)


def make_world(spec: str | WorldConfig | Mapping | None = "values", overrides: Mapping | None = None):
    """The world `spec` names, with `overrides` (WorldConfig fields) applied to a value world."""
    if isinstance(spec, WorldConfig):
        return _value_world(spec.model_dump() | dict(overrides or {}))
    if isinstance(spec, Mapping):
        return _value_world(dict(spec) | dict(overrides or {}))
    name = "values" if spec is None else spec
    if name not in _NAMED:
        raise ConfigError(f"unknown sim world {name!r}: choose one of {', '.join(WORLD_NAMES)}")
    fields = _NAMED[name]
    if fields is None:
        if overrides:
            raise ConfigError(f"sim option world_* needs world 'values' or 'values-null', not {name!r}")
        return EchoWorld()
    return _value_world(fields | dict(overrides or {}))


def _value_world(fields: dict):
    try:
        config = WorldConfig(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ())) or "world"
        raise ConfigError(f"world config: {loc}: {err.get('msg')}") from None
    return ValueWorld(config)
