"""Shared fixtures: the real data slices beside the checkout, and the embedded models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.built import built_once
from tests.helpers.models import GEMMA, SMOL
from tests.helpers.torch_env import build_comet_checkpoint
from tests.helpers.vllm_env import smol_to_hf

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


@pytest.fixture(scope="session")
def smol_hf(tmp_path_factory) -> Path:
    """SmolLM2 as an HF model directory (dequantized by transformers), for vLLM: converted once per session."""
    return built_once(tmp_path_factory, "smol-hf", smol_to_hf)


@pytest.fixture(scope="session")
def comet_checkpoint(tmp_path_factory) -> Path:
    """A tiny local COMET checkpoint (the hub is out of reach), built once per session."""
    return built_once(tmp_path_factory, "comet", build_comet_checkpoint)


# A test that uses one of these runs a real model, a real engine's set-up or the whole workflow: marked `slow`, so
# `pytest -m "not slow"` is the minute-long inner loop; `make test` runs everything.
SLOW_FIXTURES = frozenset(
    {"study", "vllm_study", "vllm_scores", "smol_hf", "comet_checkpoint", "checkpoint", "student", "base_student"}
    | {"smol", "gemma", "server", "server_engine"}
)


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
