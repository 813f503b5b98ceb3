"""FusioN: a fusor model reads the instruction and all candidates and writes one answer.

The candidates are shown in a seeded random order per prompt (the paper reports a
mild position bias); each record's ``order`` lists the pool index shown at each
position, so position p of the prompt showed ``pool[order[p]]``.

The fused answer is read by one rule: take the last line that starts with ``Answer:``
(any case, spaces before the colon, markdown marks such as ``**`` around it) and has a
``[[`` after it; the answer runs from the first ``[[`` after that line's marker to the
last ``]]`` of the output, so brackets inside the answer (code, ``[[wiki]]`` links)
survive. Text after the last ``]]`` is ignored. ``[[ ]]`` anywhere else, e.g. quoted in
the comparison, is never the answer. An output without such a block (``missing``), with
no ``]]`` after its ``[[`` (``unclosed``) or with a blank block (``empty``) is a parse
failure: it is counted, recorded with its raw text, and replaced by the configured fallback.

Base-model (``fewshot``) fusors are shown worked examples built from the task's own
few-shot shots (same task and language, documents disjoint from the items): each
shot's reference, a shortened copy of it and another shot's reference are the
candidates, an honest comparison says which is which, and the reference is the fused
answer. Every record flags ``exemplar_leak``: whether its parsed answer contains, on word
boundaries, a whole exemplar source or answer (of 20 or more non-space characters) that the
item's own reference does not contain; ``None`` when the fusor gave no answer.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from polyfuse import aggregators, methods
from polyfuse.cache import OutputCache, generate_many, generation_cost, sum_costs
from polyfuse.engines import Engine, SamplingParams
from polyfuse.errors import PolyfuseError
from polyfuse.io import content_hash, in_batches, read_jsonl, read_paired, with_progress, write_jsonl
from polyfuse.languages import language_name
from polyfuse.sample import derive_seed, prompt_hash
from polyfuse.tasks import EXAMPLE_SEPARATOR_STOP, TaskKind, instruction_text, load_template, reference_text

log = logging.getLogger(__name__)

# first: the pool's first original candidate (the single-sample answer; never an injected one); raw: the whole fusor
# output; empty: ""
FALLBACKS = ("first", "raw", "empty")


def first_original(pool: dict) -> int:
    """The index of the pool's first candidate the sampler made: an injected pool's fallback is never the injection."""
    return next(index for index, candidate in enumerate(pool["candidates"]) if not candidate.get("injected"))


# A line opening with 'Answer:' in any case, spacing or full-width colon, optionally in markdown emphasis or a heading.
ANSWER_LINE = re.compile(r"^[ \t>#*_]*answer[ \t*_]*[:\uff1a]", re.IGNORECASE | re.MULTILINE)
OPEN, CLOSE = "[[", "]]"
# Exemplar texts shorter than this (numbers, names like 'United States') recur in honest answers: not leaks.
LEAK_MIN_CHARS = 20
# A shortened exemplar candidate keeps this share of the reference's words (characters for unspaced scripts).
SHORTENED_SHARE = (2, 3)


@dataclass(frozen=True)
class ParsedFusion:
    text: str | None
    status: str  # ok | missing | unclosed | empty


def parse_fused(raw: str) -> ParsedFusion:
    """The fused answer by the module's rule: after the last ``Answer:`` line with a ``[[``, up to the last ``]]``."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    opens = [text.find(OPEN, marker.end()) for marker in ANSWER_LINE.finditer(text)]
    opens = [position for position in opens if position >= 0]
    if not opens:
        return ParsedFusion(None, "missing")
    start = opens[-1] + len(OPEN)
    end = text.rfind(CLOSE, start)
    if end < 0:
        return ParsedFusion(None, "unclosed")
    answer = text[start:end].strip()
    return ParsedFusion(answer or None, "ok" if answer else "empty")


def shown_order(seed: int, item_id: str, k: int) -> list[int]:
    """Pool indices in the order the fusor sees them, seeded per item."""
    order = list(range(k))
    random.Random(derive_seed(seed, "order", item_id)).shuffle(order)
    return order


@dataclass(frozen=True)
class FusionExemplar:
    """A worked fusion for few-shot fusors, built from one of the task's shots."""

    instruction: str
    source: str  # the shot's input, the text inside `instruction`
    candidates: tuple[str, ...]  # in shown order
    comparison: str
    answer: str


def _shortened(text: str) -> str | None:
    """The first part of `text`, clearly incomplete; None when it is too short to shorten."""
    words = text.split()
    units, joiner = (words, " ") if len(words) > 1 else (list(text), "")
    kept = len(units) * SHORTENED_SHARE[0] // SHORTENED_SHARE[1]
    return joiner.join(units[:kept]) if 0 < kept < len(units) else None


def fusion_exemplars(kind: TaskKind, shots: list[dict], seed: int) -> list[FusionExemplar]:
    """One worked fusion per shot with a reference; its candidates come from this task's shots only.

    The candidates are the shot's reference ("complete"), its first two thirds ("breaks off") and the next
    shot's reference ("answers a different instruction"), in a seeded order; the fused answer is the reference.
    A shot that yields fewer than two distinct candidates gives no exemplar.
    """
    usable = [(shot, reference) for shot in shots if (reference := reference_text(shot)) is not None]
    exemplars = []
    for index, (shot, reference) in enumerate(usable):
        other = usable[(index + 1) % len(usable)][1]
        described = {reference: "is complete and follows the instruction"}
        if (shortened := _shortened(reference)) is not None:
            described.setdefault(shortened, "breaks off before the end")
        described.setdefault(other, "answers a different instruction")
        if len(described) < 2:
            continue
        texts = list(described)
        order = shown_order(seed, f"exemplar-{shot['id']}", len(texts))
        comparison = " ".join(f"Candidate {position} {described[texts[i]]}." for position, i in enumerate(order, 1))
        exemplars.append(
            FusionExemplar(
                instruction_text(kind, shot), shot["input"], tuple(texts[i] for i in order), comparison, reference
            )
        )
    return exemplars


def _normalised(text: str) -> str:
    return " ".join(text.split()).casefold()


def exemplar_texts(exemplars: list[FusionExemplar]) -> set[str]:
    """The exemplar texts a fused answer must not contain: each whole source and answer of reasonable length.

    The shortened candidates are left out: they are prefixes of an answer, so an honest answer that opens the same
    way would match them.
    """
    texts = {_normalised(text) for exemplar in exemplars for text in (exemplar.source, exemplar.answer)}
    return {text for text in texts if len(text.replace(" ", "")) >= LEAK_MIN_CHARS}


def leaks_exemplar(output: str, texts: set[str], reference: object = None) -> bool:
    """Whether `output` holds an exemplar text on word boundaries, one the item's own reference does not hold."""
    output = _normalised(output)
    own = _normalised(" ".join(reference) if isinstance(reference, list) else reference or "")
    return any(re.search(rf"(?<!\w){re.escape(text)}(?!\w)", output) and text not in own for text in texts)


def fusion_prompt(
    template_ref: str,
    style: str,
    kind: TaskKind,
    item: dict,
    candidates: list[str],
    exemplars: Sequence[FusionExemplar] = (),
):
    template = load_template(template_ref, "fusion", style)
    text = template.render(
        instruction=instruction_text(kind, item),
        language=language_name(item["lang"]),
        candidates=candidates,
        examples=list(exemplars),
    )
    return ([{"role": "user", "content": text}] if style == "chat" else text), template.hash


@dataclass(frozen=True)
class FusionJob:
    """What a fusion job runs: a fusor (its engine, prompt style and cache) on a task kind, its prompt template,
    the sampling settings (temperature, top_p, max_tokens), the study seed and what an unparsed output becomes; and
    the aggregation method (polyfuse.aggregators) with its settings (zoo.self_moa_seq, zoo.rsa)."""

    engine: Engine
    style: str
    cache: OutputCache
    kind: TaskKind
    template: str
    sampling: dict
    seed: int
    fallback: str = "first"
    aggregator: str = methods.PAPER_AGGREGATOR
    settings: dict = field(default_factory=dict)


def prompt_primer(prompt, style: str) -> str:
    """What a few-shot prompt's last line already wrote of the answer (``Answer: [[``), read before its output; ""
    when that line does not open the answer (the paper's prompt ends at ``Comparison:``)."""
    last = prompt.rsplit("\n", 1)[-1] if style == "fewshot" else ""
    return last if ANSWER_LINE.match(last) else ""


@dataclass
class FusionCalls:
    """One item's fusion calls so far: what each cost, how each parsed, and the prompts' hashes."""

    costs: list = field(default_factory=list)
    statuses: list = field(default_factory=list)
    raws: list = field(default_factory=list)
    prompt_hashes: list = field(default_factory=list)
    template_hash: str = ""


def fuse_pools(items_path: str, shots_path: str, pools_path: str, *, job: FusionJob, stats: dict) -> Iterator[dict]:
    kind, engine, style, seed, fallback = job.kind, job.engine, job.style, job.seed, job.fallback
    if fallback not in FALLBACKS:
        raise PolyfuseError(f"fusion.fallback: {fallback!r} is not one of {', '.join(FALLBACKS)}")
    method = aggregators.aggregator(job.aggregator)
    template = method.template or job.template
    params = SamplingParams(
        temperature=float(job.sampling["temperature"]),
        top_p=float(job.sampling["top_p"]),
        max_tokens=int(job.sampling["max_tokens"]),
        stop=EXAMPLE_SEPARATOR_STOP if style == "fewshot" else (),
    )
    # Chat fusors follow the instruction alone; only base models get worked examples, from this task's shots.
    exemplars = fusion_exemplars(kind, list(read_jsonl(shots_path)), seed) if style == "fewshot" else []
    leak_texts = exemplar_texts(exemplars)
    stats["exemplars"] = len(exemplars)
    single = method.procedure is aggregators.one_call
    # Items go to the fusor a batch at a time, so batching engines (vLLM, servers) fuse many prompts at once.
    for batch in in_batches(read_paired(items_path, pools_path), engine.batch_items):
        shown, calls, procedures = [], [], []
        for item, pool in batch:
            texts = [candidate["text"].strip() for candidate in pool["candidates"]]
            # A position-bias pool fixes the order shown; any other is shown in a seeded shuffle.
            order = pool["shown_order"] if "shown_order" in pool else shown_order(seed, item["id"], len(texts))
            shown.append((texts, order))
            calls.append(FusionCalls())
            rng = random.Random(derive_seed(seed, "aggregate", job.aggregator, item["id"]))
            procedures.append(method.procedure([texts[i] for i in order], **job.settings.get(method.name, {}), rng=rng))

        def fuse_round(
            indices: list[int], requests: list[list[list[str]]], batch=batch, calls=calls
        ) -> list[list[aggregators.Fused]]:
            flat = []
            for index, item_requests in zip(indices, requests, strict=True):
                (item, _), item_calls = batch[index], calls[index]
                for member, candidates in enumerate(item_requests):
                    prompt, template_hash = fusion_prompt(template, style, kind, item, candidates, exemplars)
                    # The paper's one call keeps the seed it always had, so earlier caches stay valid.
                    key = (item["id"],) if single else (item["id"], job.aggregator, len(item_calls.statuses), member)
                    item_calls.template_hash = template_hash
                    item_calls.prompt_hashes.append(prompt_hash(prompt))
                    flat.append((item_calls, prompt, (prompt, params, [derive_seed(seed, "fuse", *key)])))
            generations = generate_many(engine, job.cache, [request for *_, request in flat])
            answers = []
            for (item_calls, prompt, _), (generation,) in zip(flat, generations, strict=True):
                parsed = parse_fused(prompt_primer(prompt, style) + generation["text"])
                stats[parsed.status] = stats.get(parsed.status, 0) + 1
                item_calls.costs.append(generation_cost(generation))
                item_calls.statuses.append(parsed.status)
                item_calls.raws.append(generation["text"])
                answers.append(aggregators.Fused(parsed.text, parsed.status))
            grouped, position = [], 0
            for item_requests in requests:
                grouped.append(answers[position : position + len(item_requests)])
                position += len(item_requests)
            return grouped

        outcomes = aggregators.run_procedure(procedures, fuse_round)
        for (item, pool), (texts, order), item_calls, outcome in zip(batch, shown, calls, outcomes, strict=True):
            own = outcome.fallback is None
            output = outcome.text
            if single and not own:  # the configured fallback for the one-call methods, as it always was
                output = {"first": texts[first_original(pool)], "raw": item_calls.raws[-1].strip(), "empty": ""}[
                    fallback
                ]
            # Only the fusor's own answer can leak; a fallback's text is not one (None: no answer to check).
            leak = leaks_exemplar(output, leak_texts, item.get("reference")) if own else None
            stats["exemplar_leaks"] = stats.get("exemplar_leaks", 0) + bool(leak)
            stats["fallbacks"] = stats.get("fallbacks", 0) + (not own)
            yield {
                "id": item["id"],
                "task": item["task"],
                "lang": item["lang"],
                "method": methods.fusion(engine.model_name, job.aggregator),
                "sampler": pool["sampler"],
                "output": output,
                "parse_status": item_calls.statuses[outcome.answer_call],
                "fallback": None if own else fallback if single else outcome.fallback,
                "raw": item_calls.raws[outcome.answer_call],
                "order": order,
                "exemplar_leak": leak,
                "fusor": engine.model_name,
                "aggregator": job.aggregator,
                **({} if single else {"call_statuses": item_calls.statuses, "failed_calls": outcome.failed_calls}),
                "template_hash": item_calls.template_hash,
                "prompt_hash": item_calls.prompt_hashes[0] if single else content_hash(item_calls.prompt_hashes),
                "cost": sum_costs(item_calls.costs),
            }


def run_fuse(items_path: str, shots_path: str, pools_path: str, out_path: str, *, job: FusionJob) -> None:
    stats: dict = {}
    records = fuse_pools(items_path, shots_path, pools_path, job=job, stats=stats)
    engine = job.engine
    count = write_jsonl(out_path, with_progress(records, items_path, f"fuse {engine.model_name}"))
    statuses = {status: stats.get(status, 0) for status in ("ok", "missing", "unclosed", "empty")}
    # parse_failures: records whose answer is a stand-in; statuses: every call's, a chain's earlier calls included
    log.info(
        "fused=%d aggregator=%s parse_failures=%d statuses=%s exemplars=%d exemplar_leaks=%d model_calls=%d",
        count,
        job.aggregator,
        stats.get("fallbacks", 0),
        statuses,
        stats["exemplars"],
        stats.get("exemplar_leaks", 0),
        engine.calls,
    )
