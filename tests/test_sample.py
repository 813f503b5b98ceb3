"""Sampling through the cache: zero model calls on a re-run, resume at the item after a crash."""

import shutil

import pytest

from polyfuse.cache import OutputCache, cache_key
from polyfuse.engines import create_engine
from polyfuse.io import read_jsonl, write_jsonl
from polyfuse.sample import SamplingJob, run_sample
from polyfuse.tasks import task_kind
from tests.helpers.models import GEMMA
from tests.helpers.workflow import without_timings

SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 12}
BASE = dict(model={"gguf": "a", "sha256": "1"}, prompt="p", params=SAMPLING, seed=1, index=0)


@pytest.mark.parametrize(
    "field, other",
    [
        ("model", {"gguf": "a", "sha256": "2"}),
        ("prompt", "q"),
        ("params", {**SAMPLING, "temperature": 0.3}),
        ("seed", 2),
        ("index", 1),
    ],
)
def test_cache_key_changes_with_every_part(field, other):
    assert cache_key(**BASE) == cache_key(**dict(BASE))
    assert cache_key(**{**BASE, field: other}) != cache_key(**BASE)


@pytest.fixture
def files(tmp_path):
    items = [
        {"id": f"m{i}", "task": "mgsm", "lang": "en", "input": f"What is {i} plus {i}?", "reference": str(2 * i)}
        for i in range(1, 4)
    ]
    write_jsonl(tmp_path / "items.jsonl", items)
    write_jsonl(tmp_path / "shots.jsonl", [{"input": "What is 5 plus 5?", "reference": "10"}])
    return tmp_path


def sample(files, engine, n, out="pools.jsonl"):
    with OutputCache(files / "cache") as cache:
        job = SamplingJob(engine, "fewshot", cache, task_kind("math"), n=n, sampling=SAMPLING, seed=3)
        run_sample(str(files / "items.jsonl"), str(files / "shots.jsonl"), str(files / out), job=job)
    return list(read_jsonl(files / out))


def test_rerun_makes_zero_model_calls_and_same_pools(files, gemma):
    start = gemma.calls
    first = sample(files, gemma, n=2)
    assert gemma.calls - start == 6
    assert [len(pool["candidates"]) for pool in first] == [2, 2, 2]
    candidate = first[0]["candidates"][0]
    assert {"text", "model", "engine", "params", "seed", "tokens_in", "tokens_out", "seconds"} <= set(candidate)
    assert candidate["model"] == "gemma270m" and candidate["engine"] == "llamacpp"
    assert first[0]["prompt_hash"] and first[0]["template_hash"]

    before = gemma.calls
    assert sample(files, gemma, n=2, out="again.jsonl") == first
    assert gemma.calls == before

    grown = sample(files, gemma, n=3, out="grown.jsonl")
    assert gemma.calls == before + 3  # only the third candidate of each item is new
    assert [pool["candidates"][:2] for pool in grown] == [pool["candidates"] for pool in first]


class CrashAfter:
    """Wraps an engine and dies after `limit` generations, as a killed job would."""

    def __init__(self, engine, limit):
        self.engine, self.limit = engine, limit
        self.model_name, self.engine_name = engine.model_name, engine.engine_name

    @property
    def calls(self):
        return self.engine.calls

    def identity(self):
        return self.engine.identity()

    batch_items = 1

    def generate(self, requests):
        for generation in self.engine.generate(requests):
            if self.limit == 0:
                raise KeyboardInterrupt("killed")
            self.limit -= 1
            yield generation


def test_killed_job_resumes_at_the_item_and_leaves_no_partial_output(files, gemma):
    with pytest.raises(KeyboardInterrupt):
        sample(files, CrashAfter(gemma, limit=3), n=2)
    assert not (files / "pools.jsonl").exists()
    assert [p.name for p in files.iterdir() if p.name.endswith(".tmp")] == []
    before = gemma.calls
    pools = sample(files, gemma, n=2)
    assert gemma.calls - before == 3  # 6 candidates, 3 of them finished before the crash
    assert len(pools) == 3


def test_same_seeds_give_the_same_candidates_after_the_cache_is_cleared(files):
    """Whatever ran before: llama.cpp's reuse of the previous prompt's KV prefix once made a re-generated candidate
    differ (' 5' then ' 3' for the same seed), so a resumed job would not have matched an uninterrupted one."""
    engine = create_engine("gemma270m", GEMMA, threads=2)  # a fresh state for the first run
    first = sample(files, engine, n=2)
    shutil.rmtree(files / "cache")
    before = engine.calls
    again = sample(files, engine, n=2, out="again.jsonl")  # starts from the last prompt's KV state
    assert engine.calls == before + 6  # generated anew, not read back
    engine.close()
    assert without_timings(again) == without_timings(first)
