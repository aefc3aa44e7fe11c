"""A model's own chat template, rendered the way its server renders it.

Exact log-probs of a chat response (picaco/llm/logprobs.py) need the very text the server feeds the model,
and that text comes from the model's chat template, not from a hand-written ChatML: SmolLM2's template,
for one, adds a default system prompt when the first message is not a system message. The template is
read from a GGUF file's metadata (`tokenizer.chat_template`, with the BOS/EOS token texts it may use) by a
small reader of the GGUF header here (no model is loaded), or from a Jinja file. It is rendered with the
environment llama.cpp's Python server (llama_cpp.llama_chat_format.Jinja2ChatFormatter) and Hugging Face
use: a sandbox, trim_blocks, lstrip_blocks, loop controls, `raise_exception`, `strftime_now`, a `tojson`
that keeps non-ASCII text.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from picaco.base.errors import ConfigError

_GGUF_MAGIC = b"GGUF"
# GGUF value types -> struct format of one scalar (8: string, 9: array are read apart)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_WANTED = ("tokenizer.chat_template", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")


class _Reader:
    def __init__(self, fh) -> None:
        self.fh = fh

    def scalar(self, fmt: str):
        size = struct.calcsize(fmt)
        raw = self.fh.read(size)
        if len(raw) != size:
            raise ValueError("the file ends inside its metadata")
        return struct.unpack(fmt, raw)[0]

    def string(self) -> str:
        n = self.scalar("<Q")
        raw = self.fh.read(n)
        if len(raw) != n:
            raise ValueError("the file ends inside its metadata")
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool):
        """One value of type `vtype`; with keep=False an array is skipped (None)."""
        if vtype == 8:
            return self.string()
        if vtype == 9:
            item_type, count = self.scalar("<I"), self.scalar("<Q")
            if not keep and item_type in _SCALARS:
                self.fh.seek(count * struct.calcsize(_SCALARS[item_type]), 1)
                return None
            items = [self.value(item_type, keep) for _ in range(count)]
            return items if keep else None
        fmt = _SCALARS.get(vtype)
        if fmt is None:
            raise ValueError(f"unknown metadata value type {vtype}")
        return self.scalar(fmt)


def gguf_metadata(path: Path, keys: tuple[str, ...] = _WANTED, token_ids: tuple[int, ...] = ()) -> dict:
    """The metadata values `keys` of a GGUF file (absent keys are left out), plus `tokens` {id: text}
    for the token ids asked for. Reads the header only."""
    out: dict = {}
    try:
        with open(path, "rb") as fh:
            r = _Reader(fh)
            if fh.read(4) != _GGUF_MAGIC:
                raise ValueError("not a GGUF file")
            version = r.scalar("<I")
            if version < 2:
                raise ValueError(f"GGUF version {version} is not supported (2 or later)")
            r.scalar("<Q")  # tensor count
            for _ in range(r.scalar("<Q")):
                key, vtype = r.string(), r.scalar("<I")
                if key == "tokenizer.ggml.tokens" and token_ids:
                    tokens = r.value(vtype, keep=True)
                    out["tokens"] = {i: tokens[i] for i in token_ids if 0 <= i < len(tokens)}
                else:
                    value = r.value(vtype, keep=key in keys)
                    if key in keys:
                        out[key] = value
    except (OSError, ValueError, struct.error) as exc:
        raise ConfigError(f"gguf {str(path)!r}: cannot read its metadata: {exc}") from None
    return out


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template and the BOS/EOS texts it may refer to; `source` says where it came from."""

    template: str
    bos_token: str = ""
    eos_token: str = ""
    source: str = ""

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return _compiled(self.template).render(
            messages=messages, bos_token=self.bos_token, eos_token=self.eos_token,
            add_generation_prompt=add_generation_prompt, raise_exception=_raise, strftime_now=_strftime_now)


def _raise(message: str):
    raise ValueError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _IgnoreGenerationTags(jinja2.ext.Extension):
    """Hugging Face's `{% generation %}` tag renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


_COMPILED: dict[str, jinja2.Template] = {}


def _compiled(template: str) -> jinja2.Template:
    compiled = _COMPILED.get(template)
    if compiled is None:
        env = ImmutableSandboxedEnvironment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
                                            extensions=[_IgnoreGenerationTags, jinja2.ext.loopcontrols])
        env.filters["tojson"] = _tojson
        compiled = _COMPILED[template] = env.from_string(template)
    return compiled


def template_from_gguf(path: Path) -> ChatTemplate:
    """The chat template inside a GGUF file, with its BOS and EOS token texts."""
    meta = gguf_metadata(path)
    template = meta.get("tokenizer.chat_template")
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(f"gguf {str(path)!r} has no chat template (metadata tokenizer.chat_template)")
    ids = tuple(int(meta[k]) for k in _WANTED[1:] if isinstance(meta.get(k), int))
    tokens = gguf_metadata(path, keys=(), token_ids=ids).get("tokens", {}) if ids else {}
    bos, eos = meta.get("tokenizer.ggml.bos_token_id"), meta.get("tokenizer.ggml.eos_token_id")
    return ChatTemplate(template, bos_token=tokens.get(bos, ""), eos_token=tokens.get(eos, ""),
                        source=f"gguf {path}")


def load_template(path: str | Path, bos_token: str = "", eos_token: str = "") -> ChatTemplate:
    """A template from a GGUF file (its metadata) or a Jinja text file (BOS/EOS as given)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"chat template {str(p)!r}: no such file")
    with open(p, "rb") as fh:
        head = fh.read(4)
    if head == _GGUF_MAGIC:
        return template_from_gguf(p)
    try:
        text = p.read_text(encoding="utf-8")
        _compiled(text)
    except (OSError, UnicodeDecodeError, jinja2.TemplateError) as exc:
        raise ConfigError(f"chat template {str(p)!r}: not a readable Jinja template: {exc}") from None
    return ChatTemplate(text, bos_token=bos_token, eos_token=eos_token, source=f"file {p}")
