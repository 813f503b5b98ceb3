"""A persistent cache of model outputs, so a finished item is never generated twice.

Keys hash everything that determines an output: the engine and model identity,
the rendered prompt, the sampling params, the seed and the candidate index.
Each entry is committed as soon as it is produced, so a killed job resumes at the
item it was on. One SQLite file per model keeps concurrent jobs of different
models from contending; jobs sharing a model wait on SQLite's lock.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from polyfuse.io import content_hash


def cache_key(**parts: Any) -> str:
    return content_hash(parts, length=32)


class OutputCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        row = self._db.execute("SELECT value FROM outputs WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO outputs (key, value) VALUES (?, ?)", (key, json.dumps(value, ensure_ascii=False))
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> OutputCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
