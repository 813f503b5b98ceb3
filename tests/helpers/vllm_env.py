"""Running code in the vLLM environment (.venv-vllm), as the workflow's vLLM rules do."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
VLLM_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(REPO)}


def vllm_python() -> Path:
    if not VLLM_PYTHON.exists():
        pytest.skip("the vLLM environment is missing: run `make .venv-vllm/.polyfuse-installed`")
    return VLLM_PYTHON


def smol_to_hf(out: Path) -> Path:
    """SmolLM2's GGUF as an HF model directory at `out` (tests/helpers/gguf_to_hf.py, in the vLLM environment)."""
    script = REPO / "tests/helpers/gguf_to_hf.py"
    command = [str(vllm_python()), str(script), str(out)]
    subprocess.run(command, check=True, capture_output=True, env=VLLM_ENV, timeout=600)
    return out
