"""Operations: a local Prefect server and worker, the deployment check, UI screenshots."""
