"""Entry points for the workflow's rules: each wires a rule's files and params to the library.

Every step logs to the rule's log file, and turns a PolyfuseError into one line on
stderr and in the log, with exit status 1, instead of a traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
import time

from polyfuse import data, fuse, report, score
from polyfuse import select as bon
from polyfuse import sample as sampling
from polyfuse.cache import OutputCache
from polyfuse.engines import create_engine
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl
from polyfuse.tasks import task_kind

log = logging.getLogger("polyfuse")


def step(func):
    @functools.wraps(func)
    def run(smk) -> None:
        handler = logging.FileHandler(smk.log[0], mode="w", encoding="utf-8") if smk.log else logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
        start = time.perf_counter()
        try:
            func(smk)
        except PolyfuseError as exc:
            log.error("%s", exc)
            print(f"polyfuse error in rule {smk.rule}: {exc}", file=sys.stderr)
            sys.exit(1)
        log.info("rule=%s seconds=%.2f", smk.rule, time.perf_counter() - start)

    return run


def _engine(smk, model_name: str):
    return create_engine(model_name, smk.params.models[model_name], threads=smk.threads)


@step
def items(smk) -> None:
    task = smk.params.task
    count = data.write_items(
        smk.output.items_file,
        smk.output.shots,
        smk.wildcards.task,
        smk.wildcards.lang,
        task["dataset"],
        shots=int(task.get("shots", 0)),
        max_items=task.get("max_items"),
    )
    log.info("items=%d", count)


@step
def sample(smk) -> None:
    model = smk.wildcards.model
    engine = _engine(smk, model)
    with OutputCache(smk.params.cache) as cache:
        sampling.run_sample(
            smk.input.items_file,
            smk.input.shots,
            smk.output.pools,
            task_kind(smk.params.kind),
            engine,
            smk.params.models[model]["prompt_style"],
            cache,
            n=int(smk.params.study["n"]),
            sampling=smk.params.sampling,
            seed=int(smk.params.study["seed"]),
        )


@step
def select(smk) -> None:
    scorer_name = smk.wildcards.selector.removeprefix("bon-")
    with OutputCache(smk.params.cache) as cache:
        context: dict = {}
        if scorer_name in bon.MODEL_SCORERS:
            model = smk.params.scorer_model
            context = dict(
                engine=_engine(smk, model),
                style=smk.params.models[model]["prompt_style"],
                shots=list(read_jsonl(smk.input.shots)),
                cache=cache,
            )
        scorer = bon.make_scorer(scorer_name, task_kind(smk.params.kind), **context)
        bon.run_select(smk.input.items_file, smk.input.pools, smk.output.outputs, scorer)


@step
def fusion(smk) -> None:
    fusor = smk.wildcards.fusor
    engine = _engine(smk, fusor)
    settings = smk.params.fusion
    with OutputCache(smk.params.cache) as cache:
        fuse.run_fuse(
            smk.input.items_file,
            smk.input.pools,
            smk.output.outputs,
            task_kind(smk.params.kind),
            engine,
            smk.params.models[fusor]["prompt_style"],
            settings["template"],
            cache,
            sampling=settings,
            seed=int(smk.params.seed),
            fallback=settings["fallback"],
        )


@step
def score_outputs(smk) -> None:
    score.run_score(smk.input.items_file, smk.input.outputs, smk.output.scores, smk.output.summary, task_kind(smk.params.kind))


@step
def aggregate(smk) -> None:
    report.run_report(
        scores=list(smk.input.scores),
        summaries=list(smk.input.summaries),
        fusions=list(smk.input.fusions),
        outputs=dict(smk.output),
        settings=smk.params.report,
    )
