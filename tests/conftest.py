"""Shared fixtures: the real data slices beside the checkout, and the embedded models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.models import GEMMA, SMOL

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

    engine = create_engine("smol", SMOL, threads=2)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def gemma():
    """Gemma 3 270M base through llama.cpp (few-shot prompts), loaded once per session."""
    from polyfuse.engines import create_engine

    engine = create_engine("gemma270m", GEMMA, threads=2)
    yield engine
    engine.close()
