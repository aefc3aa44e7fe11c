"""The Prefect flow `collect-datasets` on the shared samples + synthetic fixtures, under the shared harness."""

from __future__ import annotations

from datasets_prep import build_all, load_data_config, resolve_compositions, write_all
from datasets_prep.demos import demonstration_queries


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_collect_datasets_flow_matches_pure_build(prefect_harness, data_config_file, hf_cache, tmp_path):
    from flows.collect import collect_datasets_flow

    names = ["helpfulness", "modern_liberalism"]
    summary = collect_datasets_flow(
        compositions=names, config_path=str(data_config_file), out=str(tmp_path / "flow"), n_x=10, n_test=60, cache_dir=str(hf_cache)
    )
    assert sorted(summary) == sorted(names)
    assert all(s["x"] == 10 and s["test"] == 60 and s["pool"] >= 70 for s in summary.values())

    cfg, base = load_data_config(data_config_file)
    comps = resolve_compositions(names, cfg, base_dir=base, n_x=10, n_test=60)
    write_all(build_all(comps, {n: demonstration_queries(n) for n in names}, cache_dir=hf_cache), tmp_path / "pure")
    flow_files = _files(tmp_path / "flow")
    assert len(flow_files) == 8 and flow_files == _files(tmp_path / "pure")
