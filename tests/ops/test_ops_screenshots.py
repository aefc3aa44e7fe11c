"""The "not blank" judgement on pixel statistics (no browser needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ops.screenshots import pixel_stats


def _png(tmp_path, draw=None, colour=(28, 28, 31)):
    im = Image.new("RGB", (700, 450), colour)
    if draw:
        draw(ImageDraw.Draw(im))
    path = tmp_path / "shot.png"
    im.save(path)
    return path


def test_a_single_colour_page_is_blank(tmp_path):
    stats = pixel_stats(_png(tmp_path))
    assert stats.dominant_share == 1.0 and stats.colours == 1
    assert len(stats.blank_reasons()) == 4


def test_a_page_with_a_sidebar_text_and_a_table_is_not_blank(tmp_path):
    def draw(d):
        d.rectangle([0, 0, 120, 450], fill=(20, 20, 22))
        rng = np.random.default_rng(0)
        for row in range(12):
            d.rectangle([150, 30 + row * 30, 650, 52 + row * 30], outline=(90, 90, 100))
            d.text((160, 34 + row * 30), f"Iteration {row} TC_e -{rng.random():.4f}", fill=(230, 230, 235))
        d.rectangle([150, 5, 260, 22], fill=(34, 160, 80))

    stats = pixel_stats(_png(tmp_path, draw))
    assert stats.blank_reasons() == []


def test_a_nearly_empty_page_is_blank(tmp_path):
    stats = pixel_stats(_png(tmp_path, lambda d: d.text((10, 10), "x", fill=(255, 255, 255))))
    assert any("differ from the background" in r for r in stats.blank_reasons())


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0)])
def test_blank_in_any_background_colour(tmp_path, colour):
    assert pixel_stats(_png(tmp_path, colour=colour)).blank_reasons()
