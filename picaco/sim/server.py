"""A loopback HTTP server that speaks the OpenAI and Gemini APIs, answered by the simulator engine.

It lets the real `openai` and `google-genai` clients (and picaco's providers around them) run end to end
with no network: replies are deterministic given the request and its seed, and the server can add
latency and inject the failures real providers produce (429 with Retry-After, 500, hangs, truncated and
malformed bodies, content filtering, context-length errors, missing keys), so that retry, timeout and
error-mapping code is exercised against real wire traffic.

Endpoints
  OpenAI  POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models
  Gemini  POST /{v1,v1beta}/models/{model}:generateContent, :batchEmbedContents, :embedContent
  Sim     GET /_sim/health, GET /_sim/log, POST /_sim/reset

Run it with `python -m picaco.sim.server --port 8000 --latency-ms 100` (see `--help`), or from code with
`start_server_thread(SimServerConfig(...))` / `start_server_process(...)`.

This module is the public face; the parts live by concern:
  server_config  SimServerConfig (every knob, validated) and the fault names
  server_app     the ASGI app: routing, request log, auth, latency and fault injection
  wire, wire_openai, wire_gemini   the two wire formats: request parsing, answers, error bodies
  request_body   the body size limit (413) and JSON parsing (400)
  serving        thread and process lifecycle (the process under picaco.procs)
  server_cli     flags, one-line errors, `main`
"""

from __future__ import annotations

import sys

from picaco.sim.server_app import SimApp
from picaco.sim.server_cli import build_parser, config_from_args, main
from picaco.sim.server_config import FAULTS, SimServerConfig
from picaco.sim.server_flags import config_to_argv
from picaco.sim.serving import (
    ProcessServer,
    RunningServer,
    ThreadServer,
    start_server_process,
    start_server_thread,
)

__all__ = [
    "FAULTS", "SimServerConfig", "SimApp", "RunningServer", "ThreadServer", "ProcessServer",
    "start_server_thread", "start_server_process", "build_parser", "config_from_args", "config_to_argv", "main",
]

if __name__ == "__main__":
    sys.exit(main())
