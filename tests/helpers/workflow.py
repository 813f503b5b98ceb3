"""Running Snakemake on a study directory, as a user would, and reading what its logs say."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
# The hand-runnable test study on the demo data; it reads `resources/` relative to its working directory.
TEST_CONFIG = REPO / ".test" / "config.yaml"
# Where the suite and the libraries its rules load keep user-level caches, when set: a new user has none of them.
USER_CACHE_VARIABLES = (
    "POLYFUSE_MODEL_CACHE",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "HF_DATASETS_CACHE",
    "TORCH_HOME",
    "TORCHINDUCTOR_CACHE_DIR",
    "TRITON_CACHE_DIR",
    "MPLCONFIGDIR",
    "VLLM_CACHE_ROOT",
    "NUMBA_CACHE_DIR",
)


def new_user_env(home: Path) -> dict[str, str]:
    """A new user's process environment: an empty home, and no cache variable pointing at a warm cache, so every
    cache the suite writes outside the work tree (its model cache, Hugging Face's, torch's, matplotlib's) starts empty.
    """
    home.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key not in USER_CACHE_VARIABLES}
    # torch compiles into the temporary directory, not the home: a private one, empty too.
    (home / "tmp").mkdir(exist_ok=True)
    return {**env, "HOME": str(home), "TMPDIR": str(home / "tmp")}


def snakemake(
    workdir: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def demo_workdir(workdir: Path) -> Path:
    """A working directory for the .test study: its relative paths reach the demo data and reference answers."""
    for name in ("resources", "reference"):
        (workdir / name).symlink_to(TEST_CONFIG.parent / name, target_is_directory=True)
    return workdir


def conda_stub(directory: Path) -> dict[str, str]:
    """A process environment whose `conda` answers the three queries Snakemake makes before it creates an env.

    conda is not installed where the tests run; a dry run with `--sdm conda` needs only these answers to
    report the environments its jobs would use, and it creates none.
    """
    script = directory / "conda"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f'  \'info --json\') echo \'{{"conda_prefix": "{directory}", "platform": "linux-64"}}\' ;;\n'
        "  '--version') echo 'conda 24.11.0' ;;\n"
        '  *) echo \'{"get": {"channel_priority": "strict"}}\' ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{directory}{os.pathsep}{os.environ['PATH']}"}


def model_calls(workdir: Path) -> dict[str, int]:
    """The model calls each rule's log reports, by log path."""
    calls = {}
    for log in (workdir / "results/logs").rglob("*.log"):
        found = re.findall(r"model_calls=(\d+)", log.read_text())
        if found:
            calls[str(log.relative_to(workdir))] = int(found[-1])
    return calls


def shard_keys(shard: Path) -> list[str]:
    """A shard's keys, read only: a reader must never roll back a live writer's transaction."""
    with sqlite3.connect(f"file:{shard}?mode=ro", uri=True) as db:
        return [key for (key,) in db.execute("SELECT key FROM outputs")]


def cache_entries(directory: Path) -> int:
    """Distinct entries in a model's cache, its running jobs' open shards included (read as an outsider would)."""
    keys: set[str] = set()
    for shard in directory.rglob("*.sqlite") if directory.exists() else []:
        try:
            keys.update(shard_keys(shard))
        except sqlite3.DatabaseError:  # a shard being created, sealed or written right now: count it next time
            continue
    return len(keys)


def without_timings(value):
    """A record (or list of them) less its wall-clock `seconds`: measured, not generated, so they may differ."""
    if isinstance(value, dict):
        return {key: without_timings(item) for key, item in value.items() if key != "seconds"}
    return [without_timings(item) for item in value] if isinstance(value, list) else value


def killed_shard_rows(shard: Path, scratch: Path) -> int:
    """Rows a killed writer committed to its shard, read from a copy: opening the copy rolls back the transaction
    the kill cut short (its hot journal), and leaves the shard itself for the job's re-run to recover."""
    scratch.mkdir(parents=True, exist_ok=True)
    copy = scratch / shard.name
    for suffix in ("", "-journal"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
        if Path(f"{shard}{suffix}").exists():
            shutil.copyfile(f"{shard}{suffix}", f"{copy}{suffix}")
    with sqlite3.connect(copy) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",), shard
        return db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]
