"""COMET and XCOMET through unbabel-comet's own API, in its own environment (envs/comet.yaml).

The model is a hub name (``Unbabel/wmt22-comet-da``, ``Unbabel/XCOMET-XL``) or a
local checkpoint (a ``.ckpt`` file, or a directory holding ``checkpoints/model.ckpt``).
When it cannot be had (no network and nothing cached) the scores are recorded as
unavailable, with the reason: never a number.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from polyfuse import methods
from polyfuse.errors import PolyfuseError
from polyfuse.io import paired_exactly, read_paired, write_json, write_jsonl
from polyfuse.select import best_index

log = logging.getLogger(__name__)
MBR_COMET = "mbr_comet"  # the zoo's COMET-MBR selector: bon-mbr_comet


class CometUnavailable(Exception):
    """The configured COMET model cannot be loaded here."""


def checkpoint_path(model: str) -> str:
    """A local checkpoint file for `model`, downloading a hub model when the hub is reachable.

    Resolved before COMET (and torch) is imported: an unavailable model costs a job well under a second, not ten.
    """
    local = Path(model).expanduser()
    if local.is_file():
        return str(local)
    if (local / "checkpoints" / "model.ckpt").is_file():
        return str(local / "checkpoints" / "model.ckpt")
    if local.exists() or model.startswith((".", "/", "~")):
        raise CometUnavailable(f"no COMET checkpoint at {local}")
    try:  # installed with unbabel-comet (through transformers)
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CometUnavailable("unbabel-comet is not installed in this environment (see envs/comet.yaml)") from None
    try:  # what comet.download_model does for every hub-hosted model
        snapshot = snapshot_download(repo_id=model, local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1")
    except Exception as exc:  # the hub client raises a different class per network failure; the cause is what matters
        raise CometUnavailable(f"{model} could not be downloaded or found in the hub cache ({exc})") from None
    checkpoint = Path(snapshot) / "checkpoints" / "model.ckpt"
    if not checkpoint.is_file():
        raise CometUnavailable(f"{model} is not a COMET model: no checkpoints/model.ckpt in its repository")
    return str(checkpoint)


class Comet:
    def __init__(self, model: str, batch_size: int = 8, gpus: int = 0):
        path = checkpoint_path(model)
        try:
            from comet import load_from_checkpoint
        except ImportError:
            raise CometUnavailable("unbabel-comet is not installed in this environment (see envs/comet.yaml)") from None
        try:
            self.model = load_from_checkpoint(path, local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1")
        except Exception as exc:  # its encoder may need a hub download too
            raise CometUnavailable(f"{path} could not be loaded ({exc})") from None
        self.name, self.batch_size, self.gpus = model, batch_size, gpus

    def segment_scores(self, triples: list[dict]) -> list[float]:
        """Scores in 0-100 for ``{src, mt, ref}`` triples."""
        if not triples:
            return []
        output = self.model.predict(triples, batch_size=self.batch_size, gpus=self.gpus, progress_bar=False)
        return [100.0 * float(score) for score in output.scores]


def run_comet(
    items_path: str, outputs_paths: list[str], scores_path: str, summary_path: str, *, settings: dict
) -> None:
    """Score every method's outputs of one cell in a single pass, so the model loads once."""
    pairs = [pair for path in outputs_paths for pair in read_paired(items_path, path)]
    triples = [{"src": item["input"], "mt": output["output"], "ref": item["reference"]} for item, output in pairs]
    try:
        metric = Comet(settings["model"], int(settings["batch_size"]), int(settings["gpus"]))
        values: list[float | None] = metric.segment_scores(triples)
        status = "ok"
    except CometUnavailable as exc:
        log.warning("COMET unavailable: %s", exc)
        values, status = [None] * len(pairs), f"unavailable: {exc}"
    records = (
        {
            "id": item["id"],
            "task": item["task"],
            "lang": item["lang"],
            "method": output["method"],
            "sampler": output["sampler"],
            "values": {"comet": value},
            "comet_model": settings["model"],
        }
        for (item, output), value in paired_exactly(pairs, values, f"COMET {settings['model']!r}")
    )
    count = write_jsonl(scores_path, records)
    by_method: dict[str, list[float]] = {}
    for (_, output), value in zip(pairs, values, strict=True):
        if value is not None:
            by_method.setdefault(output["method"], []).append(value)
    system = {method: sum(scores) / len(scores) for method, scores in by_method.items()}  # COMET's system score
    write_json(
        summary_path,
        {"items": count, "comet_model": settings["model"], "comet_status": status, "system": system, "corpus": {}},
    )
    log.info("comet records=%d status=%s", count, status)


def segment_cost(segments: int, start: float) -> dict:
    """A COMET pass's cost: its segments stand for calls, as COMET reads and writes no generated token."""
    return {"calls": segments, "tokens_in": 0, "tokens_out": 0, "seconds": round(time.perf_counter() - start, 6)}


def oracle_records(items_path: str, pools_path: str, metric: Comet) -> Iterator[dict]:
    for item, pool in read_paired(items_path, pools_path):
        texts = [candidate["text"].strip() for candidate in pool["candidates"]]
        start = time.perf_counter()
        scores = metric.segment_scores([{"src": item["input"], "mt": text, "ref": item["reference"]} for text in texts])
        chosen = best_index(scores)
        cost = segment_cost(len(texts), start)
        yield {
            "id": item["id"],
            "task": item["task"],
            "lang": item["lang"],
            "method": methods.COMET_ORACLE,
            "sampler": pool["sampler"],
            "output": texts[chosen],
            "chosen": chosen,
            "scores": scores,
            "scorer": f"comet:{metric.name}",
            "cost": cost,
            "prompt_hash": pool["prompt_hash"],
        }


def run_comet_oracle(items_path: str, pools_path: str, out_path: str, *, settings: dict) -> None:
    """The selection ceiling by COMET against the reference (the paper's WMT24++ oracle)."""
    try:
        metric = Comet(settings["model"], int(settings["batch_size"]), int(settings["gpus"]))
    except CometUnavailable as exc:
        raise PolyfuseError(f"comet.oracle needs a COMET model: {exc}") from None
    log.info("%s items=%d", methods.COMET_ORACLE, write_jsonl(out_path, oracle_records(items_path, pools_path, metric)))


def mbr_scores(texts: list[str], source: str, metric, *, self_pair: bool) -> tuple[list[float], int]:
    """Each candidate's expected COMET against the others as pseudo-references (against all N with the self-pair, as
    mbrs does), and the number of segments scored."""
    pairs = [(i, j) for i in range(len(texts)) for j in range(len(texts)) if self_pair or i != j]
    values = metric.segment_scores([{"src": source, "mt": texts[i], "ref": texts[j]} for i, j in pairs])
    totals, counts = [0.0] * len(texts), [0] * len(texts)
    for (i, _), value in zip(pairs, values, strict=True):
        totals[i] += value
        counts[i] += 1
    return [total / count if count else 0.0 for total, count in zip(totals, counts, strict=True)], len(pairs)


def mbr_records(items_path: str, pools_path: str, metric, *, self_pair: bool, status: str) -> Iterator[dict]:
    """COMET-MBR selection records; with no model (`metric` None), the first candidate, stated as a fallback."""
    for item, pool in read_paired(items_path, pools_path):
        texts = [candidate["text"].strip() for candidate in pool["candidates"]]
        start = time.perf_counter()
        if metric is None:
            scores, segments = [None] * len(texts), 0
        else:
            scores, segments = mbr_scores(texts, item["input"], metric, self_pair=self_pair)
        chosen = best_index(scores)
        yield {
            "id": item["id"],
            "task": item["task"],
            "lang": item["lang"],
            "method": methods.bon(MBR_COMET),
            "sampler": pool["sampler"],
            "output": texts[chosen],
            "chosen": chosen,
            "scores": [None if score is None else round(score, 6) for score in scores],
            "scorer": MBR_COMET,
            "utility": None if metric is None else f"comet:{metric.name}",
            "self_pair": self_pair,
            "parse_status": status,
            "fallback": None if metric is not None else "first",
            "cost": segment_cost(segments, start),
            "prompt_hash": pool["prompt_hash"],
        }


def run_mbr_comet(items_path: str, pools_path: str, out_path: str, *, settings: dict) -> None:
    """MBR selection with COMET as the utility: each candidate's mean COMET against the other candidates."""
    try:
        metric, status = Comet(settings["model"], int(settings["batch_size"]), int(settings["gpus"])), "ok"
    except CometUnavailable as exc:
        log.warning("COMET unavailable, every item falls back to its first candidate: %s", exc)
        metric, status = None, f"unavailable: {exc}"
    records = mbr_records(items_path, pools_path, metric, self_pair=bool(settings["self_pair"]), status=status)
    log.info("%s items=%d status=%s", methods.bon(MBR_COMET), write_jsonl(out_path, records), status)
