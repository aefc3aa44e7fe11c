"""Thin Prefect @task wrappers over picaco's steps. Coarse by design: one task is a step, not a call
(Prefect's per-task overhead and a busy SQLite server's 503s make fine-grained tasks slow)."""
