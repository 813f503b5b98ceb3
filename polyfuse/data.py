"""Dataset loaders: real formats in, one normalised item record per line out.

An item is ``{id, task, lang, input, reference, origin: {file, line}, meta}``; prompt-only sets
(UltraFeedback-style training prompts, arena) have ``reference`` None.
Every loader reads a local file; a dataset given as a hub reference is first
downloaded to the local hub cache and then read by the same loader.

``write_items`` splits a dataset into few-shot shots (the first records in file
order) and evaluation items drawn only from other documents (``meta.document_id``;
a record without one is its own document), so no exemplar shares a document with
an item. ``max_items`` picks a seeded subset stratified by ``meta.domain``, kept in
file order.
"""

from __future__ import annotations

import csv
import os
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from polyfuse.errors import PolyfuseError
from polyfuse.io import is_utf8, read_jsonl_numbered, write_jsonl
from polyfuse.languages import base_code
from polyfuse.registry import Registry
from polyfuse.sample import derive_seed

# A reference answer is a plain decimal number: float() would also take nan, inf and 1_000.
NUMERIC_ANSWER = re.compile(r"-?\d+(?:\.\d+)?")

Loader = Callable[[Path, str], Iterator[dict]]
LOADERS: Registry[Loader] = Registry("dataset format")
loader = LOADERS.register


def item_record(
    item_id: str, text: str, reference, path: Path, line_no: int, record: dict | None = None, meta: tuple = ()
) -> dict:
    """One item as every loader gives it: id, input, reference, where it came from, and the record's `meta` keys."""
    return {
        "id": item_id,
        "input": text,
        "reference": reference,
        "origin": {"file": str(path), "line": line_no},
        "meta": {key: record[key] for key in meta if key in record},
    }


def _field(record: dict, names: tuple[str, ...], path: Path, line_no: int) -> str:
    """The first present, non-empty field among `names`; else a one-line error."""
    for name in names:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value
    raise PolyfuseError(f"{path}:{line_no}: missing field {' or '.join(repr(n) for n in names)}")


@loader("wmt24pp")
def load_wmt24pp(path: Path, lang: str) -> Iterator[dict]:
    """WMT24++ jsonl: ``lp``, ``source`` and ``target`` (slices may call it ``reference``).

    Segments marked ``is_bad_source`` and the canary row (domain ``canary``) are dropped, as the dataset card asks.
    """
    for line_no, record in read_jsonl_numbered(path):
        if record.get("is_bad_source") or record.get("domain") == "canary":
            continue
        source = _field(record, ("source",), path, line_no)
        reference = _field(record, ("target", "reference"), path, line_no)
        lp = record.get("lp", f"en-{lang}")
        target_lang = base_code(lp.split("-", 1)[-1]) if isinstance(lp, str) else None
        if target_lang != lang:
            raise PolyfuseError(f"{path}:{line_no}: language pair {lp!r} does not translate into {lang!r}")
        item_id = record.get("segment_id", record.get("id", line_no))
        yield item_record(f"{lp}-{item_id}", source, reference, path, line_no, record, ("lp", "domain", "document_id"))


@loader("mgsm")
def load_mgsm(path: Path, lang: str) -> Iterator[dict]:
    """MGSM tsv: no header, ``question<TAB>integer answer``."""
    # Undecodable bytes are escaped, not fatal, so the line that holds them can be named.
    with open(path, encoding="utf-8", newline="", errors="surrogateescape") as handle:
        for line_no, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if not row or not "".join(row).strip():
                continue
            if not is_utf8("".join(row)):
                raise PolyfuseError(f"{path}:{line_no}: not valid UTF-8")
            if len(row) != 2 or not row[0].strip():
                raise PolyfuseError(f"{path}:{line_no}: expected 'question<TAB>answer', got {len(row)} field(s)")
            answer = row[1].strip().replace(",", "")
            if not NUMERIC_ANSWER.fullmatch(answer):
                raise PolyfuseError(f"{path}:{line_no}: answer {row[1]!r} is not a number")
            yield item_record(f"mgsm-{lang}-{line_no}", row[0].strip(), answer, path, line_no)


@loader("arena")
def load_arena(path: Path, lang: str) -> Iterator[dict]:
    """m-ArenaHard / arena-hard-auto jsonl: an id field and ``prompt`` or ``turns[0].content``."""
    for line_no, record in read_jsonl_numbered(path):
        item_id = next((record[k] for k in ("question_id", "uid", "id") if record.get(k) is not None), None)
        if item_id is None:
            raise PolyfuseError(f"{path}:{line_no}: missing field 'question_id' or 'uid' or 'id'")
        prompt = record.get("prompt")
        if not (isinstance(prompt, str) and prompt.strip()):
            turns = record.get("turns")
            first = turns[0] if isinstance(turns, list) and turns else None
            prompt = first.get("content") if isinstance(first, dict) else None
        if not (isinstance(prompt, str) and prompt.strip()):
            raise PolyfuseError(f"{path}:{line_no}: missing field 'prompt' or 'turns[0].content'")
        yield item_record(str(item_id), prompt, None, path, line_no, record, ("category", "cluster"))


@loader("geofactx")
def load_geofactx(path: Path, lang: str) -> Iterator[dict]:
    """GeoFact-X jsonl: ``question`` and ``answer_list`` (every accepted answer), plus topic metadata."""
    for line_no, record in read_jsonl_numbered(path):
        question = _field(record, ("question",), path, line_no)
        answers = record.get("answer_list")
        if not (isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers)):
            raise PolyfuseError(f"{path}:{line_no}: missing field 'answer_list' (a non-empty list of strings)")
        yield item_record(
            str(record.get("id", f"geofactx-{lang}-{line_no}")),
            question,
            answers,
            path,
            line_no,
            record,
            ("group_id", "topic", "region", "answer_type"),
        )


def _first_user_turn(turns: object) -> str | None:
    """The content of the first user message of a chat transcript, if it has a non-empty one."""
    if not isinstance(turns, list):
        return None
    for turn in turns:
        if isinstance(turn, dict) and turn.get("role") == "user":
            content = turn.get("content")
            return content if isinstance(content, str) and content.strip() else None
    return None


def _response(record: dict) -> str | None:
    """A prompt's written answer, when the file has one (``response``, or the last assistant turn of ``chosen``).

    Training prompts need none; the few that have one can serve as few-shot shots and worked fusion examples.
    """
    response = record.get("response")
    if isinstance(response, str) and response.strip():
        return response
    turns = record.get("chosen")
    if isinstance(turns, list) and turns and isinstance(turns[-1], dict) and turns[-1].get("role") == "assistant":
        content = turns[-1].get("content")
        return content if isinstance(content, str) and content.strip() else None
    return None


@loader("ultrafeedback")
def load_ultrafeedback(path: Path, lang: str) -> Iterator[dict]:
    """UltraFeedback-style prompt files (also Alpagasus-X): ``prompt``, or the first user turn of ``messages``
    (or ``chosen``); the reference is the record's written answer when it has one, else None."""
    for line_no, record in read_jsonl_numbered(path):
        prompt = record.get("prompt")
        if not (isinstance(prompt, str) and prompt.strip()):
            prompt = _first_user_turn(record.get("messages")) or _first_user_turn(record.get("chosen"))
        if prompt is None:
            raise PolyfuseError(f"{path}:{line_no}: missing field 'prompt' or a user turn in 'messages' or 'chosen'")
        item_id = next((record[k] for k in ("id", "prompt_id") if record.get(k) is not None), None)
        yield item_record(
            str(item_id if item_id is not None else f"ultrafeedback-{lang}-{line_no}"),
            prompt,
            _response(record),
            path,
            line_no,
            record,
            ("source", "source_index"),
        )


@loader("gsm8k")
def load_gsm8k(path: Path, lang: str) -> Iterator[dict]:
    """GSM8K-style jsonl: ``question`` and ``answer``, the final number or a GSM8K solution ending ``#### <number>``."""
    for line_no, record in read_jsonl_numbered(path):
        question = _field(record, ("question",), path, line_no)
        solution = _field(record, ("answer",), path, line_no)
        answer = solution.rpartition("####")[2].strip().replace(",", "")
        if not NUMERIC_ANSWER.fullmatch(answer):
            raise PolyfuseError(f"{path}:{line_no}: answer {solution[-40:]!r} does not end in a number")
        yield item_record(
            str(record.get("id", f"gsm8k-{lang}-{line_no}")), question, answer, path, line_no, record, ("question_en",)
        )


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
            raise PolyfuseError(
                f"{path}:{line_no}: an answer needs an id and 'output' (or arena-hard 'choices'/'messages')"
            )
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
        local = hf_hub_download(
            repo_id=hub["repo"], filename=filename, repo_type="dataset", revision=hub.get("revision")
        )
    except Exception as exc:  # the hub client raises many types; all mean "not fetched"
        raise PolyfuseError(f"could not download {hub['repo']}/{filename} from the hub: {exc}") from None
    return Path(local)


def load_items(task: str, lang: str, dataset: dict, limit: int | None = None) -> Iterator[dict]:
    """Normalised items of one task and language, in file order, at most `limit`."""
    path = resolve_dataset_file(dataset, lang)
    if not path.is_file():
        raise PolyfuseError(f"dataset file not found: {path} (task {task!r}, language {lang!r})")
    load = LOADERS[dataset["format"]]
    seen: set[str] = set()
    for count, item in enumerate(load(path, lang)):
        if limit is not None and count >= limit:
            return
        if not item["id"].strip():  # a blank id names no item in the records, the reference answers or the report
            raise PolyfuseError(f"{path}:{item['origin']['line']}: empty item id")
        if item["id"] in seen:
            raise PolyfuseError(f"{path}:{item['origin']['line']}: duplicate item id {item['id']!r}")
        seen.add(item["id"])
        yield {"id": item["id"], "task": task, "lang": lang, **{k: v for k, v in item.items() if k != "id"}}


def document_of(record: dict) -> tuple[str, str]:
    """The document a record belongs to; a record without ``meta.document_id`` is a document of its own."""
    document = record["meta"].get("document_id")
    return ("document", str(document)) if document is not None else ("item", record["id"])


def stratified_subset(records: list[dict], size: int, seed: int) -> list[dict]:
    """A seeded sample of `size` records, each ``meta.domain`` in proportion to its share, in file order.

    Quotas use the largest-remainder rule (ties to the domain seen first); a few lines here
    rather than scikit-learn's splitter, which would pull a heavy dependency into the data step.
    """
    strata: dict[object, list[dict]] = {}
    for record in records:
        strata.setdefault(record["meta"].get("domain"), []).append(record)
    quotas = {domain: size * len(members) // len(records) for domain, members in strata.items()}
    by_remainder = sorted(strata, key=lambda domain: -(size * len(strata[domain]) % len(records)))
    for domain in by_remainder[: size - sum(quotas.values())]:
        quotas[domain] += 1
    chosen = [
        record
        for domain, members in strata.items()
        for record in random.Random(derive_seed(seed, "items", domain)).sample(members, quotas[domain])
    ]
    return sorted(chosen, key=lambda record: record["origin"]["line"])


def choose_items(
    task: str, lang: str, dataset: dict, *, shots: int, max_items: int | None, seed: int
) -> tuple[list[dict], list[dict]]:
    """The first `shots` records as few-shot exemplars, and as items the records of other documents.

    With `max_items` set (and fewer than the records left), the items are a domain-stratified subset seeded by
    `seed` and the task, not the language: parallel datasets (WMT24++, MGSM) evaluate the same segments everywhere.
    """
    records = list(load_items(task, lang, dataset))
    shot_records = records[:shots]
    shot_documents = {document_of(record) for record in shot_records}
    items = [record for record in records[shots:] if document_of(record) not in shot_documents]
    if max_items is not None and max_items < len(items):
        items = stratified_subset(items, max_items, derive_seed(seed, task))
    if not items:
        raise PolyfuseError(
            f"dataset for task {task!r}, language {lang!r} has no items outside the documents "
            f"of its {shots} few-shot exemplars"
        )
    return shot_records, items


def write_items(
    items_out: str | os.PathLike,
    shots_out: str | os.PathLike,
    task: str,
    lang: str,
    dataset: dict,
    shots: int,
    max_items: int | None,
    seed: int,
) -> int:
    """Write a cell's few-shot exemplars and items (`choose_items`); the number of items."""
    shot_records, items = choose_items(task, lang, dataset, shots=shots, max_items=max_items, seed=seed)
    write_jsonl(shots_out, shot_records)
    return write_jsonl(items_out, items)
