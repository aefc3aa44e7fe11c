"""Embedding backends side by side on the same 2,000 realistic responses. Prints each figure and ends
with one JSON line.

    .venv/bin/python bench/embeddings.py [--rounds 3] [--texts 2000]

The texts are the simulator's target responses to the bundled HH demo prompts (raw, and under the
seed meta-instruction with two demonstrations): what the E- and M-steps embed, 40-130 words. Per option:
texts/s (best of `rounds` rounds; each round runs every option once, in an order rotated per round so
a drift of the shared machine favours none), and the min and mean cosine to today's vectors (torch
fp32), also on the demo prompts themselves (short texts, where averaging over tokens hides less).
Then: truncation at max_seq_length, that the client's cache never encodes a text twice, and (unless
--demo no) configs/demo.yaml per backend on a fresh cache: the best instruction per iteration compared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from picaco.base.config import ProviderSettings  # noqa: E402
from picaco.llm.providers import st, st_onnx  # noqa: E402

MODEL = "all-MiniLM-L6-v2"


async def responses(count: int) -> tuple[list[str], list[str]]:
    """`count` distinct target responses of the simulated value world, and the prompts they answer."""
    from picaco.base.config import ClientConfig
    from picaco.config import load_run_config
    from picaco.llm.client import LLMClient
    from picaco.method.picaco import RunContext, instructed_request, user_prompt
    from picaco.method.run import load_composition_for, load_prompts

    cfg = load_run_config(ROOT / "configs/demo.yaml")
    cfg = cfg.model_copy(update={"picaco": cfg.picaco.model_copy(update={"n_prompts": 50})})
    per_side = -(-count // (2 * cfg.picaco.n_prompts))
    with tempfile.TemporaryDirectory() as tmp:
        cc = ClientConfig(cache_dir=Path(tmp), cache_mode="off",
                          providers={"sim": ProviderSettings(kind="sim", options={"world": "values"})})
        async with LLMClient(cc) as client:
            comp, prompts = load_composition_for(cfg), load_prompts(cfg)
            ctx = RunContext(config=cfg, composition=comp, prompts=prompts, client=client)
            raw = [ctx.target_request(None, user_prompt(p.text)) for p in prompts]
            seeded = [instructed_request(ctx, comp.seed_instruction, comp.demonstrations[:2], p.text) for p in prompts]
            replies = await asyncio.gather(*[client.chat(r, n=per_side) for r in raw + seeded])
    texts = list(dict.fromkeys(s.text for r in replies for s in r.samples if s.text.strip()))
    return texts[:count], [p.text for p in prompts]


def options(cache_dir: Path) -> dict[str, tuple[str, callable]]:
    """name -> (what it is, texts -> vectors). The provider's own encoders, so the figures are the code's."""
    def provider_encode(backend: str, batch_size: int = 64):
        p = st.SentenceTransformersProvider("st", ProviderSettings(kind="st", options={
            "backend": backend, "batch_size": batch_size, "onnx_dir": str(cache_dir)}))
        return p._encoder(MODEL)

    def onnx(backend: str, threads: int | None = None, sorted_: bool = True, batch_size: int = 64):
        enc = st_onnx.load_encoder(st.embedded_model_dir(), cache_dir, backend, threads)
        return lambda texts: enc.encode(texts, batch_size=batch_size, length_sorted=sorted_)

    def autocast():
        import torch

        model = st.load_model(MODEL)

        def encode(texts):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_tensor=True).float().numpy()
        return encode

    cores = st_onnx.cores()
    return {
        "torch": ("today: sentence-transformers encode, fp32, batch 64 (it sorts by length itself)",
                  provider_encode("torch")),
        "torch-bf16": ("the same encode, weights and activations in bf16, batch 64", provider_encode("torch-bf16")),
        "openvino": ("the pipeline converted to OpenVINO, bf16 on a bf16 CPU (else fp32), length-sorted batches of <= 16 padded to 16 tokens, 2 streams",
                     provider_encode("openvino")),
        "torch-autocast": ("fp32 weights, CPU autocast to bf16 (layer norms, softmax in fp32), batch 64", autocast()),
        "torch-bf16-b32": ("bf16, batch 32", provider_encode("torch-bf16", 32)),
        "torch-bf16-b128": ("bf16, batch 128", provider_encode("torch-bf16", 128)),
        "onnx": (f"ONNX Runtime fp32, length-sorted batches of 64, {cores} intra-op threads", onnx("onnx")),
        "onnx-unsorted": ("ONNX fp32, batches of 64 in arrival order (more padding)", onnx("onnx", sorted_=False)),
        "onnx-1-thread": ("ONNX fp32, length-sorted, 1 intra-op thread", onnx("onnx", threads=1)),
        "onnx-int8": ("ONNX int8 dynamic quantization (per-channel), length-sorted, batch 64", onnx("onnx-int8")),
    }


def cosines(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    return np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))


def speeds(opts: dict, texts: list[str], rounds: int) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    names = list(opts)
    times: dict[str, list[float]] = {n: [] for n in names}
    vectors: dict[str, np.ndarray] = {}
    for name in names:  # warm-up: first-call costs (thread pools, kernels, weight casts) are not throughput
        opts[name][1](texts[:64])
    for k in range(rounds):
        for name in names[k % len(names):] + names[:k % len(names)]:
            t = time.perf_counter()
            vectors[name] = np.asarray(opts[name][1](texts), dtype=np.float32)
            times[name].append(time.perf_counter() - t)
            print(f"  round {k + 1}: {name:16s} {len(texts) / times[name][-1]:7.1f} texts/s", flush=True)
    return times, vectors


async def cache_check(texts: list[str]) -> dict:
    """Through the client with its cache, default backend: a second pass and in-batch duplicates encode
    nothing more."""
    from picaco.base.config import ClientConfig
    from picaco.llm.client import LLMClient

    with tempfile.TemporaryDirectory() as tmp:
        async with LLMClient(ClientConfig(cache_dir=Path(tmp))) as client:
            await client.embed(f"st/{MODEL}", texts)
            first = client.usage["embedding"].samples_miss
            await client.embed(f"st/{MODEL}", texts + texts[:100])
            u = client.usage["embedding"]
            return {"cache_first_pass_encoded": first, "cache_second_pass_encoded": u.samples_miss - first,
                    "cache_second_pass_hits": u.samples_hit}


def demo_runs(backends: list[str]) -> dict:
    """configs/demo.yaml once per backend, each on a fresh cache: the best instruction per iteration."""
    from picaco.config import load_run_config
    from picaco.method.run import RunStore, optimize

    runs: dict[str, list[tuple[str, float]]] = {}
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_run_config(ROOT / "configs/demo.yaml")
            providers = dict(cfg.client.providers, st=ProviderSettings(kind="st", options={"backend": backend}))
            cfg = cfg.model_copy(update={"runs_dir": Path(tmp) / "runs", "client": cfg.client.model_copy(
                update={"cache_dir": Path(tmp) / "cache", "providers": providers})})
            t = time.perf_counter()
            optimize(cfg)
            runs[backend] = [(s.best.instruction, s.best.tc) for s in RunStore(cfg.run_dir).iterations()]
            print(f"demo with backend {backend}: {time.perf_counter() - t:.0f} s; TC_e of the best per iteration "
                  f"{[round(tc, 4) for _, tc in runs[backend]]}", flush=True)
    ref = runs[backends[0]]
    out = {}
    for backend in backends[1:]:
        same = [a[0] == b[0] for a, b in zip(ref, runs[backend])]
        out[backend] = {"same_best_instruction_per_iteration": same,
                        "max_tc_difference": round(max(abs(a[1] - b[1]) for a, b in zip(ref, runs[backend])), 6)}
        print(f"demo, {backend} vs {backends[0]}: same best instruction per iteration {same}; "
              f"largest TC_e difference {out[backend]['max_tc_difference']}")
    return out


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--onnx-dir", type=Path, default=st_onnx.default_dir())
    ap.add_argument("--demo", choices=["yes", "no", "only"], default="yes",
                    help="also run configs/demo.yaml per backend and compare the best instruction per iteration")
    ap.add_argument("--demo-backends", default="torch,auto,torch-bf16,onnx-int8",
                    help="the first is the reference the others are compared with")
    args = ap.parse_args()
    demo_backends = args.demo_backends.split(",")
    if args.demo == "only":
        print(json.dumps({"demo": demo_runs(demo_backends)}))
        return {}

    texts, prompts = asyncio.run(responses(args.texts))
    words = [len(t.split()) for t in texts]
    t0 = time.perf_counter()
    opts = options(args.onnx_dir)
    print(f"{len(texts)} responses of {min(words)}-{max(words)} words (median {statistics.median(words):.0f}); "
          f"backends ready in {time.perf_counter() - t0:.1f} s (an ONNX export on first use included)")
    enc = st_onnx.load_encoder(st.embedded_model_dir(), args.onnx_dir, "onnx")
    tokens = [len(x) for x in enc.token_ids(texts)]
    limit = enc.max_seq_length
    truncated = sum(n >= limit for n in tokens)
    print(f"tokens per text {min(tokens)}-{max(tokens)} (median {statistics.median(tokens):.0f}); "
          f"max_seq_length {limit}: {truncated} truncated; {sum(n > 128 for n in tokens)} longer than the 128 the "
          f"model was trained at (kept: 256 is today's meaning)")

    times, vectors = speeds(opts, texts, args.rounds)
    ref, ref_short = vectors["torch"], opts["torch"][1](prompts)
    base = len(texts) / min(times["torch"])
    figures: dict = {"texts": len(texts), "rounds": args.rounds, "truncated": truncated,
                     "max_tokens": max(tokens), "options": {}}
    print(f"\n{'option':16s} {'texts/s':>8s} {'x torch':>8s} {'min cos':>9s} {'mean cos':>9s} {'min cos short':>13s}")
    for name, (what, fn) in opts.items():
        c, c_short = cosines(ref, vectors[name]), cosines(ref_short, np.asarray(fn(prompts)))
        rate = len(texts) / min(times[name])
        figures["options"][name] = {"texts_per_s": round(rate, 1), "speedup": round(rate / base, 2),
                                    "min_cosine": round(float(c.min()), 6), "mean_cosine": round(float(c.mean()), 6),
                                    "min_cosine_short": round(float(c_short.min()), 6),
                                    "rounds_texts_per_s": [round(len(texts) / t, 1) for t in times[name]]}
        print(f"{name:16s} {rate:8.1f} {rate / base:8.2f} {c.min():9.6f} {c.mean():9.6f} {c_short.min():13.6f}  {what}")

    default = st.SentenceTransformersProvider("st", ProviderSettings(kind="st")).backend_for(MODEL)
    d = figures["options"][default]
    figures.update(default_backend=default, embed_speedup=d["speedup"], embed_min_cosine=d["min_cosine"])
    print(f"\ndefault backend here: {default}: {d['speedup']:.2f} x torch's texts/s, min cosine {d['min_cosine']:.6f}")
    figures.update(asyncio.run(cache_check(texts)))
    print(f"client cache: first pass encoded {figures['cache_first_pass_encoded']}, a second pass of the same "
          f"texts plus 100 repeats encoded {figures['cache_second_pass_encoded']} "
          f"({figures['cache_second_pass_hits']} hits)")
    if args.demo == "yes":
        figures["demo"] = demo_runs(demo_backends)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
