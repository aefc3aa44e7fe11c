"""`picaco export`: a finished run's best instruction as files an application can ship.

  system_prompt.txt   the instruction alone, as a plain system prompt
  instruction.json    the instruction with its provenance: composition and values, models, scores,
                      TC_e, the run's input fingerprint and config hash, picaco version, result date
  INSTRUCTION.md      the card: what it is, how it was made, the scores, how to use it

No key can reach these files: a run config holds the names of key variables, never keys, and only the
model strings of it are exported.
"""

from __future__ import annotations

from pathlib import Path

from picaco import __version__
from picaco.deploy.run_record import FinishedRun, load_finished_run
from picaco.io import atomic_write_json, atomic_write_text, check_output_path

EXPORT_FORMAT = 1
FILES = ("system_prompt.txt", "instruction.json", "INSTRUCTION.md")


def provenance(run: FinishedRun) -> dict:
    r, c = run.result, run.config
    comp = run.composition_record
    return {
        "format": EXPORT_FORMAT,
        "run_name": r.run_name,
        "system_prompt": r.best_instruction,
        "composition": {"name": comp.get("name", r.composition), "source": r.composition, "kind": comp.get("kind"),
                        "values": list(comp.get("values") or r.value_scores)},
        "models": {"target": c.models.target, "judge": c.models.judge, "optimizer": c.models.optimizer_model,
                   "embedding": c.models.embedding},
        "scores": {"value_scores": r.value_scores, "conformity": r.conformity,
                   "seed_value_scores": r.seed_value_scores, "seed_conformity": r.seed_conformity,
                   "missing_judgements": r.missing_judgements, "filtered_replies": r.filtered_replies},
        "tc_e": r.best_tc,
        "best_born": r.best_born,
        "iterations": c.picaco.iterations,
        "history": [h.model_dump(mode="json") for h in r.history],
        "seed_instruction": r.seed_instruction,
        "config_fingerprint": run.fingerprint,
        "config_sha256": run.config_sha256,
        "picaco_version": __version__,
        "result_date": run.result_date,
    }


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def card(record: dict) -> str:
    s, m = record["scores"], record["models"]
    seed = s["seed_value_scores"] or {}
    quoted = "> " + record["system_prompt"].replace("\n", "\n> ")
    lines = [
        f"# Meta-instruction from run `{record['run_name']}`", "",
        "## What it is", "",
        f"A system prompt that makes `{m['target']}` honour the values of the composition "
        f"**{record['composition']['name']}** ({', '.join(record['composition']['values'])}) together, found by "
        "PICACO (Jiang et al., 2025, arXiv 2507.16679) with no fine-tuning.", "", quoted, "",
        "## How it was made", "",
        f"- {record['iterations']} iterations of PICACO's Algorithm 1; this instruction was born in iteration "
        f"{record['best_born']} and has TC_e = {_fmt(record['tc_e'], 4)} (Eq. 4, higher is better).",
        f"- Target `{m['target']}`, judge `{m['judge']}`, optimizer `{m['optimizer']}`, embeddings `{m['embedding']}`.",
        f"- Result of {record['result_date']}, picaco {record['picaco_version']}; input fingerprint "
        f"`{record['config_fingerprint']}`, config sha256 `{record['config_sha256']}`.", "",
        "## Scores", "",
        "Mean judge scores of the target's responses to the run's task prompts, under the seed instruction and "
        "under this one.", "", "| value | seed | this instruction |", "|---|---|---|"]
    lines += [f"| {v} | {_fmt(seed.get(v))} | {_fmt(x)} |" for v, x in s["value_scores"].items()]
    lines += ["", f"Conformity: seed {_fmt(s['seed_conformity'])}, this instruction {_fmt(s['conformity'])}. "
                  f"Missing judge scores: {s['missing_judgements']}; replies refused by a content filter: "
                  f"{s['filtered_replies']}.", "",
              "## How to use it", "",
              "- Put `system_prompt.txt` first in the system message of every chat request to the target model "
              "(before your application's own system text, separated by a blank line).",
              f"- Or run `picaco serve --run {record['run_name']}` and point your OpenAI client's base_url at it: "
              "it adds the instruction to every request and forwards it to the target.",
              "- The scores hold for the target model above; another model needs its own run."]
    return "\n".join(lines) + "\n"


def export_run(runs_dir: str | Path, name: str, out: str | Path) -> list[Path]:
    """Write the three files into `out`; returns their paths. Refuses a missing or unfinished run."""
    run = load_finished_run(runs_dir, name)
    out = Path(out)
    check_output_path(out, "--out", folder=True)
    record = provenance(run)
    paths = [out / f for f in FILES]
    atomic_write_text(paths[0], record["system_prompt"] + "\n")
    atomic_write_json(paths[1], record)
    atomic_write_text(paths[2], card(record))
    return paths
