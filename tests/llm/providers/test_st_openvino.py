"""The OpenVINO backend of the st provider: agreement with torch in both precisions, order restored after
the length sort, the converted model kept on disk (once, whole, checked, the same vectors as converting in
memory, no torch at run time), the probe check, and the errors a user sees as one line."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from picaco.base.config import ProviderSettings
from picaco.base.errors import ConfigError
from picaco.llm.providers import st, st_onnx, st_openvino

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["a cold cellar", "Tradition?", "red apples keep through the winter, and pears ripen quickly",
         "Consider honouring the customs you grew up with and keeping to norms. " * 3,
         " ".join(f"word{i} and the sea" for i in range(120))]
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """One conversion for the module, into a folder of its own, made by the child process: converting in this
    process fails."""
    cache_dir = tmp_path_factory.mktemp("ov")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(st_openvino, "convert", lambda model_dir: pytest.fail("converted in the encoding process"))
        folder = st_openvino.converted_model(st.embedded_model_dir(), cache_dir)
    assert folder.parent == cache_dir and all(st_onnx.intact(folder / name) for name in st_openvino.FILES)
    return folder


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return st.load_model(MODEL).encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(st_openvino, "_ENCODERS", {})


def copy_of(folder: Path, tmp_path: Path) -> Path:
    """The converted folder copied under tmp_path/<same digest>/, so converted_model finds it there."""
    return Path(shutil.copytree(folder, tmp_path / folder.name))


@pytest.mark.parametrize("bf16,floor", [(False, 0.99999), (True, 0.9999)])
def test_both_precisions_agree_with_torch_in_the_callers_order(bf16, floor, converted, torch_vectors):
    encoder = st_openvino.load_encoder(st.embedded_model_dir(), converted.parent, bf16)
    assert encoder.precision == ("bf16" if bf16 else "f32")
    got = encoder.encode(TEXTS, batch_size=2)  # several batches, sorted by length, put back in order
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.sum(got * torch_vectors, axis=1).min() >= floor
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(encoder.encode(TEXTS[::-1])[::-1], got, atol=1e-3)


@pytest.mark.parametrize("bf16", [False, True])
def test_a_texts_vector_does_not_depend_on_the_rest_of_its_batch(bf16, converted):
    """Replies embedded as they arrive are batched by when they came: the vectors must not tell."""
    import random

    rng = random.Random(5)
    words = "the customs of a cold cellar keep red apples through the winter while pears ripen".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 150))) for _ in range(60)]
    encoder = st_openvino.load_encoder(st.embedded_model_dir(), converted.parent, bf16)
    whole = encoder.encode(texts)
    one_by_one = np.concatenate([encoder.encode([t]) for t in texts])
    shuffled = list(range(len(texts)))
    rng.shuffle(shuffled)
    in_chunks = np.empty_like(whole)
    for start in range(0, len(texts), 7):
        rows = shuffled[start:start + 7]
        in_chunks[rows] = encoder.encode([texts[i] for i in rows])
    assert np.array_equal(whole, one_by_one) and np.array_equal(whole, in_chunks)


def test_the_kept_model_gives_the_in_memory_conversions_vectors(converted, fresh):
    folder = converted
    model, probe = st_openvino.convert(st.embedded_model_dir())
    # torch's fp32 vectors, as the child computed them
    np.testing.assert_allclose(json.loads((folder / "probe.json").read_text())["vectors"], probe["vectors"], atol=1e-7)
    assert (folder / "model.bin").stat().st_size > 80e6  # fp32 weights (fp16 would be ~45 MB)
    kept = st_openvino.load_encoder(st.embedded_model_dir(), folder.parent, bf16=False)
    in_memory = st_openvino.OpenVinoEncoder(st.embedded_model_dir(), model, st_openvino.read_probe(folder / "probe.json"),
                                            bf16=False)
    # save_model's passes reorder a few fp32 operations: the last bit of a float32 may differ, no more
    np.testing.assert_allclose(kept.encode(TEXTS), in_memory.encode(TEXTS), rtol=0, atol=1e-6)


def test_a_kept_model_is_reused_without_converting_or_importing_torch(converted, monkeypatch):
    folder = converted
    mtimes = {f.name: f.stat().st_mtime_ns for f in folder.iterdir()}
    monkeypatch.setattr(st_openvino, "convert_files", lambda d: pytest.fail("converted again"))
    assert st_openvino.converted_model(st.embedded_model_dir(), folder.parent) == folder
    assert {f.name: f.stat().st_mtime_ns for f in folder.iterdir()} == mtimes
    # a fresh process, through the provider: a real encode, then which heavy packages it imported
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        sys.path.insert(0, {str(ROOT)!r})
        from picaco.base.config import ProviderSettings
        from picaco.llm.providers.st import SentenceTransformersProvider
        p = SentenceTransformersProvider("st", ProviderSettings(kind="st", options={{"openvino_dir": {str(folder.parent)!r}}}))
        reply = asyncio.run(p.embed("all-MiniLM-L6-v2", ["a cold cellar", "the sea"]))
        print(json.dumps([list(reply.vectors.shape), [m for m in ("torch", "transformers", "sentence_transformers")
                                                     if m in sys.modules]]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[2, 384], []]


@pytest.mark.parametrize("damage", ["half a .bin", "an edited .xml", "a wrong stamp"])
def test_a_damaged_file_is_converted_again(damage, converted, tmp_path, monkeypatch, fresh, caplog, torch_vectors):
    folder = copy_of(converted, tmp_path)
    good = {name: (folder / name).read_bytes() for name in st_openvino.FILES}
    if damage == "half a .bin":
        (folder / "model.bin").write_bytes(good["model.bin"][: len(good["model.bin"]) // 2])
    elif damage == "an edited .xml":
        (folder / "model.xml").write_bytes(good["model.xml"].replace(b"<layers>", b"<layers >", 1))
    else:
        (folder / "probe.json.sha256").write_text("0" * 64)
    conversions = []
    monkeypatch.setattr(st_openvino, "convert_files", lambda d: conversions.append(d) or dict(good))
    with caplog.at_level(logging.WARNING, logger=st_openvino.__name__):
        encoder = st_openvino.load_encoder(st.embedded_model_dir(), tmp_path, bf16=False)
    assert len(conversions) == 1 and "converting again" in caplog.text
    assert all((folder / name).read_bytes() == good[name] and st_onnx.intact(folder / name) for name in good)
    assert np.sum(encoder.encode(TEXTS) * torch_vectors, axis=1).min() >= 0.99999


def test_stored_probe_vectors_that_disagree_are_refused(converted, tmp_path, fresh):
    folder = copy_of(converted, tmp_path)
    probe = json.loads((folder / "probe.json").read_text())
    probe["vectors"] = probe["vectors"][::-1]  # each text checked against the other's vector
    st_onnx.write_stamped(folder / "probe.json", json.dumps(probe).encode())  # intact, so not rebuilt
    with pytest.raises(ConfigError, match="disagrees with torch on its probe texts") as err:
        st_openvino.load_encoder(st.embedded_model_dir(), tmp_path, bf16=False)
    assert "backend: torch" in str(err.value) and "\n" not in str(err.value)


def test_a_conversion_that_disagrees_with_torch_is_refused(converted, monkeypatch, fresh):
    monkeypatch.setattr(st_openvino, "MIN_PROBE_COSINE", 1.01)  # no conversion can pass a cosine above 1
    with pytest.raises(ConfigError, match="disagrees with torch on its probe texts"):
        st_openvino.load_encoder(st.embedded_model_dir(), converted.parent, bf16=False)


async def test_an_unwritable_folder_is_a_one_line_error_naming_it_and_the_option(tmp_path, fresh):
    (tmp_path / "a-file").write_text("")
    where = tmp_path / "a-file" / "openvino"  # under a file: no one can create it, root included
    p = st.SentenceTransformersProvider("st", ProviderSettings(kind="st", options={"openvino_dir": str(where)}))
    with pytest.raises(ConfigError) as err:
        await p.embed(MODEL, ["x"])
    msg = str(err.value)
    assert str(where) in msg and "openvino_dir" in msg and "\n" not in msg


async def test_missing_openvino_is_a_one_line_error_naming_the_package(monkeypatch, fresh, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import openvino` sees when absent
    p = st.SentenceTransformersProvider("st", ProviderSettings(kind="st", options={"backend": "openvino",
                                                                                   "openvino_dir": str(tmp_path)}))
    with pytest.raises(ConfigError) as err:
        await p.embed(MODEL, ["x"])
    msg = str(err.value)
    assert "pip install openvino" in msg and "backend: torch" in msg and "\n" not in msg


def test_a_conversion_that_fails_in_the_child_is_one_line_naming_the_model(tmp_path, monkeypatch, fresh):
    (tmp_path / "model").mkdir()  # no weights in it: sentence-transformers fails in the child
    monkeypatch.setattr(st_onnx, "source_digest", lambda model_dir, recipe: "0" * 64)
    with pytest.raises(ConfigError) as err:
        st_openvino.converted_model(tmp_path / "model", tmp_path / "ov")
    msg = str(err.value)
    assert f"could not convert {tmp_path / 'model'}: " in msg and "backend: torch" in msg and "\n" not in msg
    assert not list((tmp_path / "ov").glob("*/model.*"))  # nothing half-written
