"""A run's inputs, checked before anything is written, and their fingerprint.

`run_inputs(config)` loads and checks everything a run reads (the composition, the selected prompts,
every model's provider, the paths it writes to) and describes their *content*: the composition as
loaded (values, definitions, seed instruction, demonstrations, beta), the prompts actually selected,
the template files, the endpoints that answer each model, and the method settings. The run store keeps
that record in config.json; a resume whose record differs is refused, naming what changed
(`input_differences`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from picaco import templates
from picaco.base.config import RunConfig
from picaco.base.errors import ConfigError
from picaco.base.prompts import TaskPrompt, select_task_prompts
from picaco.io import check_output_path, read_prompt_table
from picaco.llm.logprobs import chat_template_for
from picaco.llm.providers import endpoint_identity
from picaco.llm.request import split_model
from picaco.method.incremental import from_run_difference, load_earlier_run
from picaco.values import Composition, load_composition, load_demo_prompts

# config fields that do not change a result: how calls travel, where files go, and T (a run may grow)
_NOT_SETTINGS = {"client", "runs_dir", "run_name", "composition", "prompts", "from_run"}
# picaco's extensions recorded only when not at their default, so a default run's fingerprint is the one
# it had before they existed (a run started then still resumes)
_EXTENSION_DEFAULTS = {"selection": "tc", "judge_per_value": False, "optimizer_schema": "auto"}


@dataclass(frozen=True)
class RunInputs:
    composition: Composition
    prompts: list[TaskPrompt]
    record: dict  # the content of every input, as config.json keeps it (hashes, names, settings)
    sources: dict  # where the inputs came from, for messages only (not fingerprinted)
    seeds: tuple[str, ...] = ()  # e^0 and the first existing candidates of a from_run run; () = the seed
    block_offset: int = 0  # a from_run run samples iteration t in block T_earlier + t

    @property
    def fingerprint(self) -> str:
        return _sha(json.dumps(self.record, sort_keys=True, ensure_ascii=False))


def _sha(text: str, n: int = 64) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


# -- loading ----------------------------------------------------------------------------------------------
def prompt_source(config: RunConfig) -> tuple[list[dict], str]:
    src = config.prompts
    if src.demo_family is not None:
        return load_demo_prompts(family=src.demo_family), f"bundled demo prompts ({src.demo_family})"
    if src.path is None:
        raise ConfigError("prompts: set path or demo_family")
    return read_prompt_table(src.path), f"prompts file {src.path}"


def _selected_prompts(config: RunConfig) -> tuple[list[TaskPrompt], str]:
    rows, where = prompt_source(config)
    prompts = select_task_prompts(rows, config.prompts.offset, config.picaco.n_prompts, where, "picaco.n_prompts")
    return prompts, where


def load_prompts(config: RunConfig) -> list[TaskPrompt]:
    return _selected_prompts(config)[0]


def held_out_prompts(config: RunConfig, count: int) -> list[TaskPrompt]:
    """Prompts after the optimization set in the same source: the demo's held-out test prompts."""
    shifted = config.model_copy(update={"prompts": config.prompts.model_copy(
        update={"offset": config.prompts.offset + config.picaco.n_prompts}),
        "picaco": config.picaco.model_copy(update={"n_prompts": count})})
    return load_prompts(shifted)


def load_composition_for(config: RunConfig):
    return load_composition(config.composition)


def model_endpoints(config: RunConfig) -> dict[str, str]:
    """role -> the endpoint that answers its model (the cache's identity of the server). Raises a
    ConfigError for a model that is not 'provider/model' or an unknown provider. A missing API key is not
    checked here: a rerun answered by the cache needs none, and an uncached call says it in one line."""

    models = config.models
    out = {}
    for role, model in (("target", models.target), ("judge", models.judge), ("optimizer", models.optimizer_model),
                        ("embedding", models.embedding)):
        try:
            provider, _ = split_model(model)
            out[role] = endpoint_identity(provider, config.client.providers)
        except ConfigError as exc:
            raise ConfigError(f"models.{role}: {exc}") from None
    return out


def check_paths(config: RunConfig) -> None:
    check_output_path(config.runs_dir, "runs_dir", folder=True)
    check_output_path(config.run_dir, "run directory", folder=True)
    check_output_path(config.client.cache_dir, "client.cache_dir", folder=True)
    prices = config.client.prices_path
    if prices is not None and not prices.is_file():
        raise ConfigError(f"client.prices_path {prices} is not a file")


# -- the record -------------------------------------------------------------------------------------------
def run_inputs(config: RunConfig) -> RunInputs:
    """Load and check every input of the run; writes nothing."""
    check_paths(config)
    composition = load_composition_for(config)
    prompts, where = _selected_prompts(config)
    endpoints = model_endpoints(config)
    if config.picaco.pe_estimator == "logprob":
        try:  # the target's server must give prompt log-probs: said before the run directory exists
            chat_template_for(split_model(config.models.target)[0], config.client.providers)
        except ConfigError as exc:
            raise ConfigError(f"picaco.pe_estimator logprob: models.target: {exc}") from None
    settings = config.model_dump(mode="json", exclude=_NOT_SETTINGS)
    for unchecked in ("iterations", "judge_probe", "held_out", "held_out_bootstrap"):
        settings["picaco"].pop(unchecked)
    for key, default in _EXTENSION_DEFAULTS.items():
        if settings["picaco"][key] == default:
            settings["picaco"].pop(key)
    earlier = load_earlier_run(config)
    if settings["picaco"]["pe_estimator"] == "similarity":  # the default: runs recorded before it existed resume
        settings["picaco"].pop("pe_estimator")
    comp = composition
    record = {
        "settings": settings,
        "endpoints": endpoints,
        "composition": {
            "name": comp.name, "kind": comp.kind, "beta": comp.beta, "judge_variant": comp.judge_variant,
            "values": [v.name for v in comp.values],
            "definitions": {v.name: _sha(json.dumps([v.definition, v.instruction, v.family]), 16) for v in comp.values},
            "seed_instruction": _sha(comp.seed_instruction, 16),
            "demonstrations": _sha(json.dumps([[d.query, d.answer] for d in comp.demonstrations]), 16),
        },
        "prompts": {"ids": [p.prompt_id for p in prompts], "texts": [_sha(p.text, 16) for p in prompts]},
        "templates": {"version": templates.TEMPLATE_VERSION, "digest": templates.TEMPLATE_DIGEST},
    }
    if earlier is not None:
        record["from_run"] = earlier.record()
    sources = {"composition": comp.path or config.composition, "prompts": where}
    return RunInputs(composition=composition, prompts=prompts, record=record, sources=sources,
                     seeds=earlier.seeds if earlier else (), block_offset=earlier.iterations if earlier else 0)


def input_differences(old: dict, new: dict, sources: dict) -> list[str]:
    """What differs between two records, one short phrase per input, in the order a user would look."""
    out: list[str] = []
    oc, nc = old.get("composition", {}), new.get("composition", {})
    comp_where = f"composition {sources.get('composition')}"
    if oc.get("values") != nc.get("values"):
        before, after = ", ".join(oc.get("values", [])), ", ".join(nc.get("values", []))
        out.append(f"{comp_where}: values differ: {before} -> {after}")
    else:
        changed = [v for v in nc.get("values", []) if oc.get("definitions", {}).get(v) != nc["definitions"].get(v)]
        if changed:
            out.append(f"{comp_where}: definitions or instructions of {', '.join(changed)} changed")
    for key, label in (("seed_instruction", "seed instruction"), ("demonstrations", "demonstrations"),
                       ("name", "name"), ("kind", "kind"), ("beta", "beta"), ("judge_variant", "judge variant")):
        if oc.get(key) != nc.get(key):
            shown = "" if key in ("seed_instruction", "demonstrations") else f" ({oc.get(key)} -> {nc.get(key)})"
            out.append(f"{comp_where}: {label} changed{shown}")
    op, np_ = old.get("prompts", {}), new.get("prompts", {})
    if op != np_:
        pairs_old = list(zip(op.get("ids", []), op.get("texts", [])))
        pairs_new = list(zip(np_.get("ids", []), np_.get("texts", [])))
        differ = [pid for k, (pid, _) in enumerate(pairs_new) if k >= len(pairs_old) or pairs_old[k] != pairs_new[k]]
        count = f"{len(differ)} of {len(pairs_new)} selected prompts differ" if len(pairs_old) == len(pairs_new) \
            else f"{len(pairs_old)} -> {len(pairs_new)} prompts"
        out.append(f"{sources.get('prompts')} changed ({count}, e.g. id {differ[0] if differ else '?'})")
    ot, nt = old.get("templates", {}), new.get("templates", {})
    if ot.get("version") != nt.get("version"):
        out.append(f"prompt templates changed (version {ot.get('version')} -> {nt.get('version')})")
    elif ot != nt:
        out.append(f"prompt template files changed (same version {nt.get('version')}, different text)")
    for role, endpoint in new.get("endpoints", {}).items():
        before = old.get("endpoints", {}).get(role)
        if before != endpoint:
            out.append(f"the server answering the {role} model changed ({before} -> {endpoint})")
    out += [f"{path} {a} -> {b}" for path, a, b in _leaf_diff(old.get("settings", {}), new.get("settings", {}))]
    earlier = from_run_difference(old.get("from_run"), new.get("from_run"))
    if earlier:
        out.append(earlier)
    return out


def _leaf_diff(a, b, prefix: str = ""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _leaf_diff(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
    elif a != b:
        yield prefix, json.dumps(a), json.dumps(b)
