"""picaco.llm.pricing: exact names before patterns, the most specific pattern first, unpriced is None."""

from __future__ import annotations

import pytest

from picaco.base.errors import ConfigError
from picaco.llm.pricing import Price, PriceTable


def test_exact_then_longest_matching_pattern():
    table = PriceTable({"p/*": Price(input=1.0), "p/big-*": Price(input=5.0, output=10.0),
                        "p/big-exact": Price(input=2.0)})
    assert table.price("p/big-exact") == Price(input=2.0)
    assert table.price("p/big-x") == Price(input=5.0, output=10.0)
    assert table.price("p/small") == Price(input=1.0)
    assert table.price("q/anything") is None


def test_cost_is_usd_per_million_tokens_and_none_when_unpriced():
    table = PriceTable({"p/m": Price(input=2.0, output=8.0)})
    assert table.cost("p/m", 1_000_000, 500_000) == pytest.approx(6.0)
    assert table.cost("q/m", 10, 10) is None


def test_the_bundled_table_loads_and_a_user_file_extends_it(tmp_path):
    extra = tmp_path / "prices.yaml"
    extra.write_text("mine/model-*: {input: 0.25, output: 1.0}\n")
    table = PriceTable.load(extra, None)
    assert table.cost("mine/model-a", 4_000_000, 0) == pytest.approx(1.0)


@pytest.mark.parametrize("text, match", [
    ("a: [unclosed", "is not valid YAML"),
    ("- a\n- b\n", "must map 'provider/model'"),
    ("m/x: {input: 1, extra: 2}\n", r"model 'm/x': \('extra',\)"),
])
def test_a_bad_user_table_is_one_line_naming_the_file(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        PriceTable.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_missing_user_table_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        PriceTable.load(tmp_path / "nope.yaml")
