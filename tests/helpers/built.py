"""Test artifacts that take minutes to build (an HF copy of a GGUF, a COMET checkpoint), built once per session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The directory `name`, built by `build` once per test session: xdist's workers share it, the first to ask
    builds it under a lock, and a build that failed half-way is built again rather than read."""
    root = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker's base sits in the session's own
        root = root.parent
    target, done = root / name, root / f"{name}.built"
    with FileLock(root / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            build(target)
            done.touch()
    return target
