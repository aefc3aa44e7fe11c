"""`python -m picaco.llm.engine_child <llama_cpp.server flags>`: llama.cpp's server, ended with its parent.

The engine runs in a session of its own (so a Ctrl-C reaches picaco, which stops it in order), which
also means nothing ends it if picaco is killed with -9. A daemon thread watches the parent process id
and ends the engine when the parent is gone, so a killed run leaves no engine behind holding memory.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time


def _watch_parent(parent: int, every_s: float = 1.0) -> None:
    while True:
        time.sleep(every_s)
        if os.getppid() != parent:  # re-parented: the process that started us is gone
            os._exit(0)


def main() -> None:
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True, name="parent-watch").start()
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
