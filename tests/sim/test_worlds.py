"""picaco.sim.worlds: the one registry that turns a world name, config or mapping into a world."""

from __future__ import annotations

import pytest

from picaco.base.errors import ConfigError
from picaco.sim.engine import EchoWorld
from picaco.sim.world import ValueWorld
from picaco.sim.world_config import WorldConfig
from picaco.sim.worlds import WORLD_NAMES, make_world


def test_each_name_gives_its_world_with_its_fields():
    assert set(WORLD_NAMES) == {"values", "values-null", "values-harm-flipped", "echo"}
    plain, null, flipped = make_world("values"), make_world("values-null"), make_world("values-harm-flipped")
    assert all(isinstance(w, ValueWorld) for w in (plain, null, flipped))
    assert plain.config == WorldConfig()
    assert null.config.null_optimizer and not plain.config.null_optimizer
    assert flipped.config.judge_harm_flipped and not flipped.config.null_optimizer
    assert isinstance(make_world("echo"), EchoWorld)
    assert make_world(None).config == WorldConfig()


def test_overrides_apply_over_a_named_world_a_config_or_a_mapping():
    assert make_world("values-null", {"judge_noise": 0.0}).config == WorldConfig(null_optimizer=True, judge_noise=0.0)
    assert make_world(WorldConfig(null_optimizer=True), {"judge_noise": 0.0}).config.judge_noise == 0.0
    assert make_world({"judge_noise": 0.0}).config == WorldConfig(judge_noise=0.0)


@pytest.mark.parametrize("spec, overrides, match", [
    ("valuez", None, r"unknown sim world 'valuez': choose one of values, values-null"),
    ("echo", {"judge_noise": 0.0}, r"world_\* needs world 'values'"),
    ("values", {"no_such_field": 1}, r"world config: no_such_field: "),
    ({"judge_noise": "loud"}, None, r"world config: judge_noise: "),
])
def test_anything_else_is_one_config_error_line(spec, overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        make_world(spec, overrides)
    assert "\n" not in str(info.value)
