"""Memory of a long run's embeddings: RSS after each of many encodes of varied batches through picaco's
client (cache off), with the st provider handing freed memory back to the OS (the default) and without.
Each side runs in its own process, since the heap is per process. Prints figures and a final JSON line.

    .venv/bin/python bench/embed_memory.py [--encodes 12]

Why: the paper configuration's process grew to 2.2 GB RSS over ten iterations; the growth was glibc
keeping the activation buffers of every new batch shape (see picaco/llm/providers/st.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = ("the sea river mountain honest harm help value kind answer question careful respect tradition "
         "pleasure caution refuse explain safety risk law family duty joy").split()


async def one_side(release: bool, encodes: int) -> dict:
    import psutil

    from picaco.base.config import ClientConfig
    from picaco.llm.client import LLMClient
    from picaco.base.config import ProviderSettings

    rng = random.Random(0)  # both sides encode the same batches
    tmp = Path(tempfile.mkdtemp(prefix="picaco-embed-mem-"))
    cfg = ClientConfig(cache_dir=tmp / "cache", cache_mode="off", providers={
        "st": ProviderSettings(kind="st", max_concurrency=4096, options={"release_memory": release})})
    proc = psutil.Process()
    rss = []
    t0 = time.perf_counter()
    async with LLMClient(cfg) as client:
        for _ in range(encodes):
            texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 180)))
                     for _ in range(rng.randint(150, 330))]
            await client.embed("st/all-MiniLM-L6-v2", texts)
            rss.append(proc.memory_info().rss / 2**20)
    return {"wall_s": time.perf_counter() - t0, "rss_mb": [round(x) for x in rss]}


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encodes", type=int, default=12)
    ap.add_argument("--side", choices=["release", "keep"])
    args = ap.parse_args()
    if args.side:
        print(json.dumps(asyncio.run(one_side(args.side == "release", args.encodes))))
        return {}
    figures: dict = {"encodes": args.encodes}
    for side in ("release", "keep"):
        out = subprocess.run([sys.executable, __file__, "--side", side, "--encodes", str(args.encodes)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        figures[f"{side}_rss_mb"] = r["rss_mb"]
        figures[f"{side}_growth_mb"] = r["rss_mb"][-1] - r["rss_mb"][0]
        figures[f"{side}_wall_s"] = round(r["wall_s"], 1)
        print(f"{side:7s} freed memory: RSS after each encode {r['rss_mb']} MB; growth after the first "
              f"{figures[f'{side}_growth_mb']} MB; {r['wall_s']:.0f} s")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
