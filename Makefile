# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test bench bench-cache-backends bench-call-layer bench-method bench-world bench-datasets bench-evaluate bench-budgets bench-pareto bench-logprob bench-real-engine bench-overlap bench-paper-config clean

# torch goes in first, pinned: an unpinned torch pulls gigabytes of CUDA wheels.
# llama-cpp-python (extra `local`) compiles from source (~10 min, once: pip caches the wheel); without
# GGML_NATIVE=OFF the wheel would use this CPU's instruction set and crash on another one.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	CMAKE_ARGS=-DGGML_NATIVE=OFF $(BIN)/pip install -q -c constraints.txt -e '.[dev,dask,local]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/picaco demo

# ruff, then mypy over picaco, flows and tasks ([tool.mypy] in pyproject.toml; its incremental cache lives in
# the virtualenv, so a warm check takes seconds and a fresh clone builds it on its first run), then pytest.
test: $(STAMP)
	$(BIN)/ruff check picaco flows tasks datasets_prep bench ops
	$(BIN)/mypy --cache-dir $(VENV)/mypy_cache
	PREFECT_SERVER_ANALYTICS_ENABLED=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	$(BIN)/python -m pytest -q -p no:cacheprovider

# Each benchmark prints its figures and ends with one JSON line (see README, Benchmarks).
bench: bench-call-layer bench-cache-backends bench-method bench-world bench-datasets bench-evaluate bench-budgets bench-pareto bench-ops

bench-call-layer: $(STAMP)
	$(BIN)/python bench/call_layer.py

bench-cache-backends: $(STAMP)
	$(BIN)/python bench/cache_backends.py

bench-method: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/method.py

bench-world: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/world.py

bench-datasets: $(STAMP)
	HF_DATASETS_OFFLINE=1 $(BIN)/python bench/datasets_build.py

bench-evaluate: $(STAMP)
	$(BIN)/python bench/evaluate.py

# PICACO vs OPRO at matched budgets up to the paper's (~15-25 min here; cached under artifacts/bench-budgets/)
bench-budgets: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/budgets.py

bench-pareto: $(STAMP)
	$(BIN)/python bench/pareto.py

# exact p_e vs Eq. (6) on one M-step with SmolLM2 on the llama.cpp engine (extra 'local'); minutes on 2 cores
bench-logprob: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/logprob_pe.py

# SmolLM2 on the managed llama.cpp engine (extra 'local'); not in `bench`: ~30 min on 2 cores
bench-real-engine: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/real_engine.py

# issue 14: one iteration against the sim server at 500 ms / 64 at once: wall / max(latency bound, embedding)
bench-overlap: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/overlap.py

# issue 14: the paper configuration (N=50, M1=10, M2=15, T=10) per embedding backend: wall, CPU, peak RSS,
# same selection; ~25 min per side on 2 cores (the torch fp32 reference takes longer)
bench-paper-config: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/paper_config.py

clean:
	rm -rf $(VENV) artifacts/cache artifacts/runs artifacts/demo artifacts/prefect artifacts/datasets

include ops/Makefile.inc
