"""Putting a finished run's meta-instruction to work: `picaco export` (files an application can ship)
and `picaco serve` (an OpenAI-compatible endpoint that adds the instruction to every chat request).

  run_record  a finished run as read from its run store, or one line saying why it cannot be used
  export      system_prompt.txt, instruction.json (provenance) and INSTRUCTION.md (the card)
  target      where `serve` forwards: base_url, model and key of an OpenAI-compatible server
  proxy       the ASGI app: merge the instruction into the messages, forward, stream, scrub errors
  serving     run the app with uvicorn on 127.0.0.1, in this thread or a background one
"""
