"""Headless Chromium screenshots of the Prefect UI, and a check that they are not blank.

    .venv/bin/python ops/screenshots.py http://127.0.0.1:4200/runs out.png [--expect TEXT ...]

Debian's `chromium` renders the UI only if it is given a virtual-time budget (without one the
screenshot is taken before the Vue app has drawn anything). "Not blank" is judged on pixel statistics
(PIL comes with matplotlib): the most common colour may not cover almost the whole page, the page needs
a few percent of "ink" pixels and a spread of colours. Text the page must show is checked separately on
the rendered DOM (`--dump-dom`), since pixels cannot tell a run page from an error page.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser")


class ScreenshotError(RuntimeError):
    pass


def find_chromium() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium(install: bool = True) -> str:
    """The chromium binary; installs Debian's package when missing and we run as root (CI does)."""
    path = find_chromium()
    if path:
        return path
    if not install:
        raise ScreenshotError("chromium is not installed (apt-get install -y chromium)")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ScreenshotError("chromium is not installed and cannot be installed here (needs root and apt-get): "
                              "run `apt-get update && apt-get install -y chromium`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
            raise ScreenshotError(f"`{' '.join(cmd)}` exited with {proc.returncode}:\n{tail}")
    path = find_chromium()
    if not path:
        raise ScreenshotError("apt-get installed chromium but no chromium binary is on PATH")
    return path


def _chromium(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    browser = ensure_chromium()
    with tempfile.TemporaryDirectory(prefix="picaco-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(cmd, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ScreenshotError(f"chromium did not finish within {timeout:.0f} s: {' '.join(args[-2:])}") from None


def screenshot(url: str, out: Path, *, width: int = 1400, height: int = 900, budget_ms: int = 20000,
               timeout: float = 180) -> Path:
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    proc = _chromium([f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}",
                      f"--screenshot={out}", url], timeout)
    if not out.is_file() or out.stat().st_size == 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise ScreenshotError(f"chromium wrote no screenshot of {url} (exit {proc.returncode}): {' | '.join(tail)}")
    return out


def rendered_dom(url: str, *, width: int = 1400, height: int = 900, budget_ms: int = 20000,
                 timeout: float = 180) -> str:
    """The page's DOM after its scripts ran for `budget_ms` of virtual time. The window size matters: the
    UI renders lists (e.g. a run's logs) only as far as the viewport reaches."""
    proc = _chromium([f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                     timeout)
    if proc.returncode != 0:
        raise ScreenshotError(f"chromium --dump-dom {url} exited with {proc.returncode}")
    return proc.stdout.decode("utf-8", errors="replace")


@dataclass
class PixelStats:
    width: int
    height: int
    dominant_share: float  # share of the most common colour
    ink_share: float  # share of pixels far (> 48 in some channel) from the most common colour
    colours: int  # distinct colours (after quantizing each channel to 32 levels)
    luminance_std: float

    def blank_reasons(self) -> list[str]:
        reasons = []
        if self.dominant_share > 0.97:
            reasons.append(f"one colour covers {self.dominant_share:.1%} of the page")
        if self.ink_share < 0.01:
            reasons.append(f"only {self.ink_share:.2%} of the pixels differ from the background")
        if self.colours < 16:
            reasons.append(f"only {self.colours} distinct colours")
        if self.luminance_std < 4.0:
            reasons.append(f"luminance standard deviation {self.luminance_std:.1f}")
        return reasons


def pixel_stats(png: Path) -> PixelStats:
    import numpy as np
    from PIL import Image

    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.int16)
    h, w, _ = rgb.shape
    flat = rgb.reshape(-1, 3)
    packed = (flat[:, 0].astype(np.int64) << 16) | (flat[:, 1].astype(np.int64) << 8) | flat[:, 2]
    values, counts = np.unique(packed, return_counts=True)
    top = values[counts.argmax()]
    background = np.array([(top >> 16) & 255, (top >> 8) & 255, top & 255], dtype=np.int16)
    ink = (np.abs(flat - background) > 48).any(axis=1).mean()
    quant = np.unique((flat // 8).astype(np.int64) @ np.array([1024, 32, 1]))
    lum = flat @ np.array([0.299, 0.587, 0.114])
    return PixelStats(width=w, height=h, dominant_share=float(counts.max() / len(flat)), ink_share=float(ink),
                      colours=int(len(quant)), luminance_std=float(lum.std()))


def check_page(url: str, out: Path, expect: list[str] = (), **kw) -> dict:
    """Screenshot `url` to `out`, check it is not blank and that the rendered page shows each of `expect`."""
    stats = pixel_stats(screenshot(url, out, **kw))
    reasons = stats.blank_reasons()
    if reasons:
        raise ScreenshotError(f"screenshot {out} of {url} looks blank: {'; '.join(reasons)}")
    if expect:
        dom = rendered_dom(url, **{k: v for k, v in kw.items() if k in ("width", "height", "budget_ms", "timeout")})
        missing = [e for e in expect if e not in dom]
        if missing:
            raise ScreenshotError(f"the rendered page {url} does not show {missing}")
    return {"url": url, "png": str(out), **asdict(stats)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="screenshot a page in headless chromium and check it is not blank")
    ap.add_argument("url")
    ap.add_argument("out", type=Path)
    ap.add_argument("--expect", action="append", default=[], help="text the rendered page must contain")
    args = ap.parse_args(argv)
    try:
        print(json.dumps(check_page(args.url, args.out, args.expect)))
    except ScreenshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
