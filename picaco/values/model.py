"""Values, compositions and demonstrations as data, loaded from the YAML files next to this module.

The bundled files quote the PICACO paper (App. A.1 definitions, Tables 2-4 instructions, Sec. 4.1 and
App. C.1 compositions and hyperparameters); the demonstrations were written for this project. Users
add compositions as YAML files (see docs/values_and_templates.md); every problem in such a file is
reported as one line naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from picaco.base.errors import ConfigError
from picaco.templates.parse import normalize_key
from picaco.templates.render import JUDGE_VARIANTS, schwartz_seed_instruction

MAX_VALUES = 16
FAMILIES: tuple[str, ...] = ("helpful", "harmless", "schwartz")
KINDS: tuple[str, ...] = ("hh", "schwartz")
DEFAULT_BETA = {"hh": 5.0, "schwartz": 0.5}  # App. C.1
PROMPT_FAMILIES: tuple[str, ...] = ("hh", "schwartz")

_VALUE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9 \-]{0,39}$")
_COMP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LIBRARY_FILES = ("values_hh.yaml", "values_schwartz.yaml")


class CompositionError(ConfigError, ValueError):
    """A value library, composition or prompt file is malformed. The message is one line."""


# ------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class Value:
    name: str
    definition: str
    instruction: str
    family: Literal["helpful", "harmless", "schwartz"]
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _VALUE_NAME.match(self.name):
            raise ValueError(
                f"value name {self.name!r} must be 1-40 characters: letters, digits, spaces or hyphens, "
                "starting with a letter"
            )
        for f in ("definition", "instruction"):
            v = getattr(self, f)
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"value {self.name!r}: {f} must be a non-empty string")
        if self.family not in FAMILIES:
            raise ValueError(f"value {self.name!r}: family must be one of {list(FAMILIES)}, got {self.family!r}")

    @property
    def key(self) -> str:
        return normalize_key(self.name)


@dataclass(frozen=True)
class Demonstration:
    query: str
    answer: str

    def __post_init__(self) -> None:
        for f in ("query", "answer"):
            v = getattr(self, f)
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"demonstration {f} must be a non-empty string")


@dataclass(frozen=True)
class Composition:
    name: str
    title: str
    kind: Literal["hh", "schwartz"]
    beta: float
    seed_instruction: str
    values: tuple[Value, ...]
    demonstrations: tuple[Demonstration, ...]
    judge_variant: Literal["quality", "harm", "values"]
    source: str = ""
    demonstrations_source: str = ""
    path: str = field(default="", compare=False)

    @property
    def value_names(self) -> list[str]:
        return [v.name for v in self.values]

    @property
    def uses_relevance(self) -> bool:
        """Schwartz conformity is weighted by Fig. 10 relevance (Eq. 7, App. C.2)."""
        return self.kind == "schwartz"

    @property
    def digest(self) -> str:
        """sha256 of everything that changes a prompt or a score; put it into cache keys and run ids."""
        # Provenance text (source fields, the file path) is left out: moving a file keeps its digest.
        data = {
            "name": self.name, "title": self.title, "kind": self.kind, "beta": self.beta,
            "seed_instruction": self.seed_instruction, "judge_variant": self.judge_variant,
            "values": [[v.name, v.definition, v.instruction, v.family] for v in self.values],
            "demonstrations": [[d.query, d.answer] for d in self.demonstrations],
        }
        blob = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


# ------------------------------------------------------------------------------------ YAML schemas


class _ValueSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    definition: str
    instruction: str
    family: Literal["helpful", "harmless", "schwartz"]
    source: str = ""


class _LibrarySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str
    notes: str = ""
    values: list[_ValueSpec]


class _DemoSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str
    answer: str


class _CompositionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    title: str | None = None
    source: str = ""
    notes: str = ""
    kind: Literal["hh", "schwartz"] | None = None
    beta: float | None = None
    judge_variant: Literal["quality", "harm", "values"] | None = None
    seed_instruction: str | None = None
    values: list[Any]  # a library name (str) or a new value (mapping, checked as _ValueSpec)
    demonstrations_source: str = ""
    demonstrations: list[_DemoSpec] | None = None
    demonstrations_from: str | None = None

    @field_validator("beta", mode="before")
    @classmethod
    def _beta_not_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):  # YAML `beta: yes` would otherwise become 1.0
            raise ValueError(f"must be a number, got {v}")
        return v


def _fail(path: Any, field_name: str, msg: str) -> CompositionError:
    return CompositionError(f"{path}: field '{field_name}': {msg}")


def _loc(loc: tuple, prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _validate(model: type[BaseModel], data: Any, path: Any, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        where = f"field '{prefix}'" if prefix else "top level"
        raise CompositionError(f"{path}: {where}: expected a YAML mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = _loc(err["loc"], prefix)
        if err["type"] == "extra_forbidden":
            msg = f"unknown field (allowed: {', '.join(model.model_fields)})"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        raise _fail(path, loc, msg) from None


def _read_yaml(path: Path | Any, shown: Any) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CompositionError(f"{shown}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CompositionError(f"{shown}: cannot read ({e.__class__.__name__}: {e})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or e.__class__.__name__
        raise CompositionError(f"{shown}: not valid YAML ({problem}{where})") from None


def _here():
    return resources.files(__package__)


# ------------------------------------------------------------------------------------ the library


@lru_cache(maxsize=1)
def _library() -> dict[str, Value]:
    out: dict[str, Value] = {}
    for fname in _LIBRARY_FILES:
        shown = f"picaco/values/{fname}"
        spec = _validate(_LibrarySpec, _read_yaml(_here().joinpath(fname), shown), shown)
        for i, v in enumerate(spec.values):
            try:
                value = Value(v.name, v.definition.strip(), v.instruction.strip(), v.family, v.source or spec.source)
            except ValueError as e:
                raise _fail(shown, f"values[{i}]", str(e)) from None
            if value.key in out:
                raise _fail(shown, f"values[{i}].name", f"duplicate value {v.name!r}")
            out[value.key] = value
    return out


def load_value_library() -> dict[str, Value]:
    """All bundled values (5 helpful, 4 harmless, 10 Schwartz) by canonical name, in file order."""
    return {v.name: v for v in _library().values()}


def get_value(name: str) -> Value:
    """A library value by name, matched case-insensitively and ignoring spaces, hyphens and underscores."""
    found = _library().get(normalize_key(name))
    if found is None:
        raise CompositionError(f"unknown value {name!r}; known values: {', '.join(load_value_library())}")
    return found


# ------------------------------------------------------------------------------- compositions


def list_compositions() -> list[str]:
    """Names of the five bundled paper compositions."""
    folder = _here().joinpath("compositions")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def default_judge_variant(values: list[Value] | tuple[Value, ...]) -> Literal["quality", "harm", "values"]:
    """Fig. 9 wording by the values' families: all harmless -> 'harm', all Schwartz -> 'values', else
    'quality' (also for HH Balance and for mixed sets, whose aspects read as qualities)."""
    families = {v.family for v in values}
    if families == {"harmless"}:
        return "harm"
    if families == {"schwartz"}:
        return "values"
    return "quality"


def derive_seed_instruction(kind: str, values: list[Value] | tuple[Value, ...]) -> str:
    """App. C.1: HH -> the Table 2 instructions of the values joined by spaces; Schwartz -> Table 3."""
    if kind == "hh":
        return " ".join(v.instruction for v in values)
    return schwartz_seed_instruction([v.name for v in values])


def load_composition(name_or_path: str | Path) -> Composition:
    """A bundled composition by name (see list_compositions()) or a user composition from a YAML path."""
    if isinstance(name_or_path, str) and name_or_path in list_compositions():
        return _bundled(name_or_path)
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        return _load_user(path)
    raise CompositionError(
        f"unknown composition {str(name_or_path)!r}: expected one of {', '.join(list_compositions())} "
        "or a path to a .yaml file"
    )


@lru_cache(maxsize=None)
def _bundled(name: str) -> Composition:
    shown = f"picaco/values/compositions/{name}.yaml"
    data = _read_yaml(_here().joinpath("compositions", f"{name}.yaml"), shown)
    return _build(data, shown, default_name=name)


def _load_user(path: Path) -> Composition:
    shown = str(path)
    if path.is_dir():
        raise CompositionError(f"{shown}: is a directory, expected a composition .yaml file")
    return _build(_read_yaml(path, shown), shown, default_name=path.stem)


def _build(data: Any, shown: str, default_name: str) -> Composition:
    spec: _CompositionSpec = _validate(_CompositionSpec, data, shown)

    name = spec.name if spec.name is not None else default_name
    if not _COMP_NAME.match(name):
        origin = "" if spec.name is not None else " (taken from the file name; set 'name' to override)"
        raise _fail(shown, "name", f"{name!r} must be lower-case letters, digits and '_', starting with a "
                    f"letter{origin}")

    # values
    if not spec.values:
        raise _fail(shown, "values", "at least one value is needed")
    if len(spec.values) > MAX_VALUES:
        raise _fail(shown, "values", f"{len(spec.values)} values given, at most {MAX_VALUES} allowed")
    library = _library()
    values: list[Value] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(spec.values):
        if not isinstance(entry, (str, dict)):
            raise _fail(shown, f"values[{i}]", "must be a library value name or a mapping with name, "
                        f"definition, instruction, family; got {type(entry).__name__}")
        if isinstance(entry, dict):
            entry = _validate(_ValueSpec, entry, shown, prefix=f"values[{i}]")
        if isinstance(entry, str):
            value = library.get(normalize_key(entry))
            if value is None:
                raise _fail(
                    shown, f"values[{i}]",
                    f"unknown value {entry!r} (library: {', '.join(v.name for v in library.values())}; "
                    "or define a new one with name, definition, instruction, family)",
                )
        else:
            if normalize_key(entry.name) in library:
                raise _fail(
                    shown, f"values[{i}].name",
                    f"{entry.name!r} is a library value: list it by name, or give your value another name",
                )
            try:
                value = Value(entry.name, entry.definition.strip(), entry.instruction.strip(), entry.family,
                              entry.source or f"user-defined in {shown}")
            except ValueError as e:
                raise _fail(shown, f"values[{i}]", str(e)) from None
        if value.key in seen:
            raise _fail(shown, f"values[{i}]", f"duplicate value {value.name!r} (also values[{seen[value.key]}])")
        seen[value.key] = i
        values.append(value)

    # kind, beta, judge variant, seed
    families = {v.family for v in values}
    kind = spec.kind
    if kind is None:
        if families == {"schwartz"}:
            kind = "schwartz"
        elif "schwartz" not in families:
            kind = "hh"
        else:
            raise _fail(shown, "kind", "values mix Schwartz and HH families: set kind to 'hh' or 'schwartz'")
    beta = DEFAULT_BETA[kind] if spec.beta is None else spec.beta
    if not beta > 0 or beta != beta or beta == float("inf"):
        raise _fail(shown, "beta", f"must be a finite number > 0, got {spec.beta}")
    variant = spec.judge_variant or default_judge_variant(values)
    assert variant in JUDGE_VARIANTS
    seed = derive_seed_instruction(kind, values) if spec.seed_instruction is None else spec.seed_instruction.strip()
    if not seed:
        raise _fail(shown, "seed_instruction", "is empty")

    # demonstrations
    if spec.demonstrations is not None and spec.demonstrations_from is not None:
        raise _fail(shown, "demonstrations_from", "give either demonstrations or demonstrations_from, not both")
    demos_source = spec.demonstrations_source
    if spec.demonstrations_from is not None:
        if spec.demonstrations_from not in list_compositions():
            raise _fail(
                shown, "demonstrations_from",
                f"unknown composition {spec.demonstrations_from!r} (bundled: {', '.join(list_compositions())})",
            )
        other = _bundled(spec.demonstrations_from)
        demos = list(other.demonstrations)
        demos_source = demos_source or f"reused from {spec.demonstrations_from}: {other.demonstrations_source}"
    else:
        if not spec.demonstrations:
            raise _fail(shown, "demonstrations", "needs at least one (query, answer) demonstration; got none")
        demos = []
        seen_q: dict[str, int] = {}
        for i, d in enumerate(spec.demonstrations):
            try:
                demo = Demonstration(d.query.strip(), d.answer.strip())
            except ValueError as e:
                raise _fail(shown, f"demonstrations[{i}]", str(e)) from None
            qkey = " ".join(demo.query.lower().split())
            if qkey in seen_q:
                raise _fail(shown, f"demonstrations[{i}].query", f"duplicate of demonstrations[{seen_q[qkey]}]")
            seen_q[qkey] = i
            demos.append(demo)

    title = spec.title.strip() if spec.title else name.replace("_", " ").title()
    return Composition(
        name=name,
        title=title,
        kind=kind,
        beta=float(beta),
        seed_instruction=seed,
        values=tuple(values),
        demonstrations=tuple(demos),
        judge_variant=variant,
        source=spec.source.strip(),
        demonstrations_source=demos_source.strip(),
        path=shown,
    )


# ----------------------------------------------------------------------------------- demo prompts

_PROMPT_KINDS = {
    "hh": ("info", "instruction", "harmful", "continuation"),
    "schwartz": ("dilemma", "stem", "value_question"),
}


@lru_cache(maxsize=1)
def _demo_prompts() -> tuple[dict, ...]:
    shown = "picaco/data/demo_prompts.jsonl"
    text = resources.files("picaco").joinpath("data", "demo_prompts.jsonl").read_text(encoding="utf-8")
    rows, ids = [], set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CompositionError(f"{shown}: line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or set(row) != {"prompt_id", "prompt", "family", "kind"}:
            raise CompositionError(f"{shown}: line {n}: fields must be exactly prompt_id, prompt, family, kind")
        if row["family"] not in _PROMPT_KINDS or row["kind"] not in _PROMPT_KINDS[row["family"]]:
            raise CompositionError(f"{shown}: line {n}: bad family/kind {row['family']!r}/{row['kind']!r}")
        if not isinstance(row["prompt"], str) or not row["prompt"].strip():
            raise CompositionError(f"{shown}: line {n}: field 'prompt' is empty")
        if row["prompt_id"] in ids:
            raise CompositionError(f"{shown}: line {n}: duplicate prompt_id {row['prompt_id']!r}")
        ids.add(row["prompt_id"])
        rows.append(row)
    return tuple(rows)


def load_demo_prompts(family: str | None = None) -> list[dict]:
    """The bundled demo prompts (written for this project), optionally of one family ('hh'|'schwartz').

    Each row is {"prompt_id", "prompt", "family", "kind"}; a fresh list of fresh dicts each call.
    """
    if family is not None and family not in PROMPT_FAMILIES:
        raise CompositionError(f"load_demo_prompts: family must be one of {list(PROMPT_FAMILIES)}, got {family!r}")
    return [dict(r) for r in _demo_prompts() if family is None or r["family"] == family]
