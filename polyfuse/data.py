"""Dataset loaders: real formats in, one normalised item record per line out.

An item is ``{id, task, lang, input, reference, origin: {file, line}, meta}``.
Every loader reads a local file; a dataset given as a hub reference is first
downloaded to the local hub cache and then read by the same loader.
"""

from __future__ import annotations

import csv
import itertools
import os
from pathlib import Path
from typing import Callable, Iterator

from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl_numbered, write_jsonl
from polyfuse.languages import base_code

Loader = Callable[[Path, str], Iterator[dict]]
LOADERS: dict[str, Loader] = {}


def loader(name: str) -> Callable[[Loader], Loader]:
    def register(func: Loader) -> Loader:
        LOADERS[name] = func
        return func

    return register


def _field(record: dict, names: tuple[str, ...], path: Path, line_no: int) -> str:
    """The first present, non-empty field among `names`; else a one-line error."""
    for name in names:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value
    raise PolyfuseError(f"{path}:{line_no}: missing field {' or '.join(repr(n) for n in names)}")


@loader("wmt24pp")
def load_wmt24pp(path: Path, lang: str) -> Iterator[dict]:
    """WMT24++ jsonl: ``lp``, ``source`` and ``target`` (slices may call it ``reference``)."""
    for line_no, record in read_jsonl_numbered(path):
        source = _field(record, ("source",), path, line_no)
        reference = _field(record, ("target", "reference"), path, line_no)
        lp = record.get("lp", f"en-{lang}")
        target_lang = base_code(lp.split("-", 1)[-1])
        if target_lang != lang:
            raise PolyfuseError(f"{path}:{line_no}: language pair {lp!r} does not translate into {lang!r}")
        item_id = record.get("segment_id", record.get("id", line_no))
        yield {
            "id": f"{lp}-{item_id}",
            "input": source,
            "reference": reference,
            "origin": {"file": str(path), "line": line_no},
            "meta": {k: record[k] for k in ("lp", "domain", "document_id") if k in record},
        }


@loader("mgsm")
def load_mgsm(path: Path, lang: str) -> Iterator[dict]:
    """MGSM tsv: no header, ``question<TAB>integer answer``."""
    with open(path, encoding="utf-8", newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2 or not row[0].strip():
                raise PolyfuseError(f"{path}:{line_no}: expected 'question<TAB>answer', got {len(row)} field(s)")
            answer = row[1].strip().replace(",", "")
            try:
                float(answer)
            except ValueError:
                raise PolyfuseError(f"{path}:{line_no}: answer {row[1]!r} is not a number") from None
            yield {
                "id": f"mgsm-{lang}-{line_no}",
                "input": row[0].strip(),
                "reference": answer,
                "origin": {"file": str(path), "line": line_no},
                "meta": {},
            }


@loader("arena")
def load_arena(path: Path, lang: str) -> Iterator[dict]:
    """m-ArenaHard / arena-hard-auto jsonl: an id field and ``prompt`` or ``turns[0].content``."""
    for line_no, record in read_jsonl_numbered(path):
        item_id = next((record[k] for k in ("question_id", "uid", "id") if record.get(k) is not None), None)
        if item_id is None:
            raise PolyfuseError(f"{path}:{line_no}: missing field 'question_id' or 'uid' or 'id'")
        prompt = record.get("prompt")
        if not (isinstance(prompt, str) and prompt.strip()):
            turns = record.get("turns") or [{}]
            prompt = turns[0].get("content") if isinstance(turns[0], dict) else None
        if not (isinstance(prompt, str) and prompt.strip()):
            raise PolyfuseError(f"{path}:{line_no}: missing field 'prompt' or 'turns[0].content'")
        yield {
            "id": str(item_id),
            "input": prompt,
            "reference": None,
            "origin": {"file": str(path), "line": line_no},
            "meta": {k: record[k] for k in ("category", "cluster") if k in record},
        }


@loader("geofactx")
def load_geofactx(path: Path, lang: str) -> Iterator[dict]:
    """GeoFact-X jsonl: ``question`` and ``answer_list`` (every accepted answer), plus topic metadata."""
    for line_no, record in read_jsonl_numbered(path):
        question = _field(record, ("question",), path, line_no)
        answers = record.get("answer_list")
        if not (isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers)):
            raise PolyfuseError(f"{path}:{line_no}: missing field 'answer_list' (a non-empty list of strings)")
        yield {
            "id": str(record.get("id", f"geofactx-{lang}-{line_no}")),
            "input": question,
            "reference": answers,
            "origin": {"file": str(path), "line": line_no},
            "meta": {k: record[k] for k in ("group_id", "topic", "region", "answer_type") if k in record},
        }


def load_answers(path: str | os.PathLike) -> dict[str, str]:
    """A reference system's answers: polyfuse outputs (``id``, ``output``) or arena-hard model answers."""
    answers = {}
    for line_no, record in read_jsonl_numbered(Path(path)):
        item_id = next((record[k] for k in ("id", "question_id", "uid") if record.get(k) is not None), None)
        text = record.get("output") or record.get("answer") or record.get("response")
        if text is None and record.get("choices"):
            text = record["choices"][0]["turns"][0]["content"]
        if text is None and record.get("messages"):
            text = record["messages"][-1]["content"]
            text = text.get("answer") if isinstance(text, dict) else text
        if item_id is None or not isinstance(text, str):
            raise PolyfuseError(f"{path}:{line_no}: an answer needs an id and 'output' (or arena-hard 'choices'/'messages')")
        answers[str(item_id)] = text
    return answers


def resolve_dataset_file(dataset: dict, lang: str) -> Path:
    """The local file holding `lang` for a dataset spec; hub datasets are downloaded first."""
    if "files" in dataset:
        if lang not in dataset["files"]:
            raise PolyfuseError(f"dataset has no file for language {lang!r} (keys: {sorted(dataset['files'])})")
        return Path(dataset["files"][lang])
    if "path" in dataset:
        return Path(dataset["path"].format(lang=lang))
    return download_from_hub(dataset["hub"], lang)


def download_from_hub(hub: dict, lang: str) -> Path:
    """Fetch one dataset file from the Hugging Face hub into its local cache."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise PolyfuseError("dataset.hub needs the 'huggingface_hub' package (pip install huggingface_hub)") from None
    filename = hub["filename"].format(lang=lang, locale=hub.get("locales", {}).get(lang, lang))
    try:
        local = hf_hub_download(repo_id=hub["repo"], filename=filename, repo_type="dataset", revision=hub.get("revision"))
    except Exception as exc:  # the hub client raises many types; all mean "not fetched"
        raise PolyfuseError(f"could not download {hub['repo']}/{filename} from the hub: {exc}") from None
    return Path(local)


def load_items(task: str, lang: str, dataset: dict, max_items: int | None = None) -> Iterator[dict]:
    """Normalised items of one task and language, in file order, at most `max_items`."""
    path = resolve_dataset_file(dataset, lang)
    if not path.is_file():
        raise PolyfuseError(f"dataset file not found: {path} (task {task!r}, language {lang!r})")
    load = LOADERS[dataset["format"]]
    seen: set[str] = set()
    for count, item in enumerate(load(path, lang)):
        if max_items is not None and count >= max_items:
            return
        if item["id"] in seen:
            raise PolyfuseError(f"{path}:{item['origin']['line']}: duplicate item id {item['id']!r}")
        seen.add(item["id"])
        yield {"id": item["id"], "task": task, "lang": lang, **{k: v for k, v in item.items() if k != "id"}}


def write_items(
    items_out: str | os.PathLike,
    shots_out: str | os.PathLike,
    task: str,
    lang: str,
    dataset: dict,
    shots: int,
    max_items: int | None,
) -> int:
    """Write the first `shots` records as few-shot exemplars and the next `max_items` as items."""
    records = load_items(task, lang, dataset, None if max_items is None else shots + max_items)
    write_jsonl(shots_out, itertools.islice(records, shots))
    count = write_jsonl(items_out, records)
    if count == 0:
        raise PolyfuseError(f"dataset for task {task!r}, language {lang!r} has no items after {shots} few-shot exemplars")
    return count
