"""Memory of a long run's embeddings: RSS after each of many encodes of varied batches through picaco's
client (cache off), per st backend, with the provider handing freed memory back to the OS (the
default) and without. Each side runs in its own process, since the heap is per process. Prints figures
and a final JSON line.

    .venv/bin/python bench/embed_memory.py [--encodes 40] [--sides auto:release,torch:release,torch:keep]

Why: the paper configuration's process grew to 2.2 GB RSS over ten iterations; the growth was glibc
keeping the activation buffers of every new batch shape (see picaco/llm/providers/st.py).

The OpenVINO backend (`auto`) is converted once per machine before the sides start, so its side measures
what a run measures: the kept model loaded without torch (each side reports whether it imported torch).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("the sea river mountain honest harm help value kind answer question careful respect tradition "
         "pleasure caution refuse explain safety risk law family duty joy").split()


async def one_side(backend: str, release: bool, encodes: int) -> dict:
    import psutil

    from picaco.base.config import ClientConfig, ProviderSettings
    from picaco.llm.client import LLMClient

    rng = random.Random(0)  # both sides encode the same batches
    tmp = Path(tempfile.mkdtemp(prefix="picaco-embed-mem-"))
    cfg = ClientConfig(cache_dir=tmp / "cache", cache_mode="off", providers={
        "st": ProviderSettings(kind="st", max_concurrency=4096, options={"release_memory": release,
                                                                         "backend": backend})})
    proc = psutil.Process()
    rss = []
    t0 = time.perf_counter()
    async with LLMClient(cfg) as client:
        for _ in range(encodes):
            texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 180)))
                     for _ in range(rng.randint(150, 330))]
            await client.embed("st/all-MiniLM-L6-v2", texts)
            rss.append(proc.memory_info().rss / 2**20)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"wall_s": time.perf_counter() - t0, "rss_mb": [round(x) for x in rss], "peak_mb": round(peak),
            "torch_imported": "torch" in sys.modules}


def prepare_openvino() -> None:
    """Convert the embedded model for the openvino backend now (in this parent process, which imports
    torch for it), so no side pays the one-off conversion and its memory."""
    from picaco.llm.providers import st, st_openvino

    if st.openvino_available():
        print(f"openvino model: {st_openvino.converted_model(st.embedded_model_dir(), st_openvino.default_dir())}")


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encodes", type=int, default=40)
    ap.add_argument("--sides", default="auto:release,onnx:release,torch:release,torch:keep",
                    help="backend:release|keep, comma-separated")
    ap.add_argument("--side", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        backend, mode = args.side.split(":")
        print(json.dumps(asyncio.run(one_side(backend, mode == "release", args.encodes))))
        return {}
    figures: dict = {"encodes": args.encodes}
    if any(side.split(":")[0] in ("auto", "openvino") for side in args.sides.split(",")):
        prepare_openvino()
    for side in args.sides.split(","):
        out = subprocess.run([sys.executable, __file__, "--side", side, "--encodes", str(args.encodes)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rss = r["rss_mb"]
        figures[side] = {"rss_mb": rss, "growth_mb": rss[-1] - rss[0], "peak_mb": r["peak_mb"],
                         "second_half_growth_mb": rss[-1] - rss[len(rss) // 2], "wall_s": round(r["wall_s"], 1),
                         "torch_imported": r["torch_imported"]}
        print(f"{side:15s} RSS after each encode {rss} MB; peak {r['peak_mb']} MB; growth after the first "
              f"{rss[-1] - rss[0]} MB, over the second half {rss[-1] - rss[len(rss) // 2]} MB; {r['wall_s']:.0f} s; "
              f"torch imported: {r['torch_imported']}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
