"""Memory of the synthetic-data set steps: peak traced memory of merging a teacher pool and building its SFT set.

    .venv/bin/python benchmarks/bench_sets.py            # 100 vs 10,000 prompts
    .venv/bin/python benchmarks/bench_sets.py --check    # exit non-zero when the peak ratio is above the target

Both steps stream (polyfuse.pools.merge_pools, polyfuse.distill.build_sft_set), so the peak Python memory
(tracemalloc) of the large run should stay within 1.2x of the small one. The synthetic pools have three members
(n = 2, 1, 1), texts of 8 to 24 words, and a BoN, a single and a fusion output per prompt; one fusion in ten is
a parse failure and one in three a whole copy of a candidate. The inputs are written before tracing starts, and a
warm-up run first compiles the templates and imports the modules.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET_RATIO = 1.2
MEMBERS = [
    {"model": "alpha", "n": 2, "temperature": 0.3},
    {"model": "beta", "n": 1, "temperature": 0.3},
    {"model": "gamma", "n": 1, "temperature": 0.3},
]
WORDS = (
    "the a basil window water soil sunny keep light warm leaves pot drain every morning evening plant grow "
    "fresh small green roots week day gently dry wet bright cool indoor kitchen herb trim top stem"
).split()
FAILURE_EVERY = 10  # one fusion in ten has no answer block
COPY_EVERY = 3  # one in three copies a candidate whole, as fusors often do; the rest splice two candidates


def text(rng: random.Random) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(8, 24))) + "."


def write_inputs(directory: Path, count: int) -> tuple[str, list[str], dict[str, str]]:
    """Items, member pool files and the method outputs of `count` synthetic prompts, streamed to disk."""
    from polyfuse.io import write_jsonl

    ids = [f"q{i}" for i in range(count)]
    items = directory / "items.jsonl"
    write_jsonl(
        items,
        ({"id": i, "task": "bench", "lang": "en", "input": f"Prompt {i}?", "reference": None} for i in ids),
    )

    def candidates(item_id: str) -> list[str]:
        """The pool's texts for one prompt, re-derived from its id so no file's content is held in memory."""
        rng = random.Random(item_id)
        return [text(rng) for _ in range(sum(member["n"] for member in MEMBERS))]

    member_paths, offset = [], 0
    for k, member in enumerate(MEMBERS):
        path = directory / "pool" / f"{k}.jsonl"
        write_jsonl(
            path,
            (
                {
                    "id": i,
                    "task": "bench",
                    "lang": "en",
                    "prompt_hash": f"p-{k}-{i}",
                    "template_hash": f"t-{k}",
                    "sampler": member["model"],
                    "candidates": [
                        {
                            "text": t,
                            "model": member["model"],
                            "engine": "llamacpp",
                            "params": {"temperature": member["temperature"], "top_p": 0.95, "max_tokens": 64},
                            "seed": offset + j,
                            "tokens_in": 10,
                            "tokens_out": len(t.split()),
                            "seconds": 0.1,
                            "finish_reason": "stop",
                        }
                        for j, t in enumerate(candidates(i)[offset : offset + member["n"]])
                    ],
                }
                for i in ids
            ),
        )
        member_paths.append(str(path))
        offset += member["n"]

    def selection(item_id: str, method: str, chosen: int) -> dict:
        texts = candidates(item_id)
        scores = [float(j == chosen) for j in range(len(texts))]
        return {
            "id": item_id,
            "method": method,
            "sampler": "teachers",
            "output": texts[chosen],
            "chosen": chosen,
            "scores": scores,
        }

    def fusion(position: int, item_id: str) -> dict:
        first, _, third, _ = candidates(item_id)
        spliced = " ".join(first.split()[: len(first.split()) // 2] + third.split()[len(third.split()) // 2 :])
        fused = third if position % COPY_EVERY == 0 else spliced
        failed = position % FAILURE_EVERY == 0
        return {
            "id": item_id,
            "method": "fusion-f",
            "sampler": "teachers",
            "output": first if failed else fused,
            "parse_status": "missing" if failed else "ok",
        }

    outputs = {
        "single": directory / "single.jsonl",
        "bon-b": directory / "bon.jsonl",
        "fusion-f": directory / "fusion.jsonl",
    }
    write_jsonl(outputs["single"], (selection(i, "single", 0) for i in ids))
    write_jsonl(outputs["bon-b"], (selection(i, "bon-b", int(i[1:]) % 4) for i in ids))
    write_jsonl(outputs["fusion-f"], (fusion(position, i) for position, i in enumerate(ids)))
    return str(items), member_paths, {method: str(path) for method, path in outputs.items()}


def run_steps(directory: Path, items: str, member_paths: list[str], outputs: dict[str, str]) -> dict:
    from polyfuse.distill import SetTarget, build_sft_set
    from polyfuse.pools import merge_pools
    from polyfuse.tasks import task_kind

    pool = directory / "teachers.jsonl"
    merge_pools(items, member_paths, MEMBERS, pool, "teachers")
    return build_sft_set(
        items,
        pool,
        outputs,
        directory / "sft" / "sft.jsonl",
        directory / "sft" / "card.json",
        target=SetTarget("fusion", "fusion-f", task_kind("chat")),
    )


def measure(directory: Path, count: int) -> tuple[float, float, dict]:
    """Peak traced memory (MB) and wall seconds of merging and building the set for `count` prompts."""
    directory.mkdir()
    inputs = write_inputs(directory, count)
    tracemalloc.start()
    start = time.perf_counter()
    card = run_steps(directory, *inputs)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20, seconds, card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", nargs=2, type=int, default=(100, 10_000), metavar=("SMALL", "LARGE"))
    parser.add_argument("--check", action="store_true", help=f"exit 1 when the peak ratio is above {TARGET_RATIO}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure(Path(tmp) / "warm-up", 10)
        (small_mb, small_s, small_card), (large_mb, large_s, large_card) = (
            measure(Path(tmp) / f"n{count}", count) for count in args.prompts
        )
    ratio = large_mb / small_mb
    small, large = args.prompts
    print(
        f"sets: merge_pools + build_sft_set peak traced memory {small:,} prompts {small_mb:.3f} MB "
        f"({small_s:.1f} s, {small_card['written']} written); {large:,} prompts {large_mb:.3f} MB "
        f"({large_s:.1f} s, {large_card['written']} written); ratio {ratio:.2f} (target <= {TARGET_RATIO})"
    )
    if args.check and ratio > TARGET_RATIO:
        sys.exit(f"bench_sets: peak memory ratio {ratio:.2f} is above the target {TARGET_RATIO}")


if __name__ == "__main__":
    main()
