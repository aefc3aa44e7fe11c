"""The one road for every LLM and embedding call: request -> cache -> dedupe -> slot -> retry -> provider."""
