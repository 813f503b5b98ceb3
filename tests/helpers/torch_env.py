"""Running code in the torch rule group's environment (.venv-comet), as the workflow does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TORCH_PYTHON = REPO / ".venv-comet" / "bin" / "python"
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def torch_python() -> Path:
    if not TORCH_PYTHON.exists():
        pytest.skip("the torch environment is missing: run `make setup`")
    return TORCH_PYTHON


def run_torch(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_python(torch_python(), *args, check=check)


def run_python(python: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(python), *args], capture_output=True, text=True, env=OFFLINE, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stderr[-3000:]}")
    return result


def build_comet_checkpoint(out: Path) -> Path:
    run_torch(str(REPO / "tests/helpers/build_comet_checkpoint.py"), str(out))
    return out
