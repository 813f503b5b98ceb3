"""Running Snakemake on a study directory, as a user would, and reading what its logs say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args],
                            capture_output=True, text=True, timeout=1200)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def model_calls(workdir: Path) -> dict[str, int]:
    """The model calls each rule's log reports, by log path."""
    calls = {}
    for log in (workdir / "results/logs").rglob("*.log"):
        found = re.findall(r"model_calls=(\d+)", log.read_text())
        if found:
            calls[str(log.relative_to(workdir))] = int(found[-1])
    return calls
