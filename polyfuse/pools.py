"""Multi-model pools: candidates from several models (teachers), merged into one ordinary pool.

A pool in config names its members, each a model sampled ``n`` times at its own temperature (the pool's by
default). Each member is sampled into a single-model pool file like any sampler's; ``merge_pools`` then streams
the member files in step with the items and writes one pool record per item whose candidates are the members'
candidates in member order, each keeping its own model, engine, params, seed and cost. Select, fuse, score and
judge read the merged file as they read any pool: its ``sampler`` is the pool's name.

A merged record also lists its ``members`` (model, n, temperature and the prompt and template hash each member
was sampled from); its own ``prompt_hash`` and ``template_hash`` hash those, so a change to any member's prompt
or template changes the pool's.

``derived_pools`` makes the analyses' pools from a sampler's pool, with no sampling (see ``polyfuse.methods`` for
the variants' names): a seeded subset of the candidates, k of them replaced by injected ones, or the whole pool
with the order the fusor must show it in (``shown_order``). Each record says what it was derived from and how.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator

from polyfuse import analyses, methods
from polyfuse.errors import PolyfuseError
from polyfuse.io import content_hash, read_jsonl, read_paired, write_jsonl
from polyfuse.select import make_scorer
from polyfuse.tasks import TaskKind


def pool_members(name: str, spec: dict, models: dict) -> list[dict]:
    """The members of config pool `name` as ``{model, n, temperature}``, n 1 and the pool's temperature by default.

    Two members with the same model and temperature are an error: their candidates would be sampled from the same
    seeds (the seed depends on the item and the candidate index only), so they would repeat each other.
    """
    if not spec["members"]:
        raise PolyfuseError(f"pools.{name}.members: a pool needs at least one member")
    members = []
    seen: dict[tuple[str, float], int] = {}
    for index, member in enumerate(spec["members"]):
        where = f"pools.{name}.members[{index}]"
        model = member["model"]
        if model not in models:
            raise PolyfuseError(f"{where}: unknown model {model!r}; known: {', '.join(sorted(models))}")
        temperature = float(member.get("temperature", spec["temperature"]))
        if (model, temperature) in seen:
            raise PolyfuseError(
                f"{where}: same model {model!r} and temperature {temperature:g} as members[{seen[model, temperature]}]"
                f" (they would draw the same seeds); raise that member's n instead"
            )
        seen[model, temperature] = index
        members.append({"model": model, "n": int(member.get("n", 1)), "temperature": temperature})
    return members


def merged_pools(
    items_path: str | os.PathLike, member_paths: list[str], members: list[dict], pool_name: str
) -> Iterator[dict]:
    """One merged pool record per item, streamed from the member pool files in step with the items."""
    if len(member_paths) != len(members):
        raise PolyfuseError(f"pool {pool_name!r}: {len(member_paths)} member files for {len(members)} members")
    walks = [read_paired(items_path, path) for path in member_paths]
    for pairs in zip(*walks, strict=True):
        item = pairs[0][0]
        candidates, listed = [], []
        for (_, record), member, path in zip(pairs, members, member_paths, strict=True):
            if record["sampler"] != member["model"] or len(record["candidates"]) != member["n"]:
                raise PolyfuseError(
                    f"{path}: record {record['id']!r} has {len(record['candidates'])} candidates from "
                    f"{record['sampler']!r}; pool {pool_name!r} expects {member['n']} from {member['model']!r}"
                )
            candidates.extend(record["candidates"])
            listed.append({**member, "prompt_hash": record["prompt_hash"], "template_hash": record["template_hash"]})
        yield {
            "id": item["id"],
            "task": item["task"],
            "lang": item["lang"],
            "prompt_hash": content_hash([member["prompt_hash"] for member in listed]),
            "template_hash": content_hash([member["template_hash"] for member in listed]),
            "sampler": pool_name,
            "members": listed,
            "candidates": candidates,
        }


def merge_pools(
    items_path: str | os.PathLike,
    member_paths: list[str],
    members: list[dict],
    out_path: str | os.PathLike,
    pool_name: str,
) -> int:
    """Write the merged pool of `pool_name` atomically; returns the number of pool records."""
    return write_jsonl(out_path, merged_pools(items_path, member_paths, members, pool_name))


class FollowingPools:
    """The pools after a given item's, in file order and round to the one before it, read lazily from the pool file
    with a second reader: the donors of fluent injections, with only as many pools held as a donor draw looked at."""

    def __init__(self, pools_path: str | os.PathLike):
        self.path = pools_path
        self.reader: Iterator[dict] = iter(())
        self.window: collections.deque[dict] = collections.deque()  # from the current item's pool on

    def _read(self) -> dict:
        record = next(self.reader, None)
        if record is None:  # round to the first pool
            self.reader = read_jsonl(self.path)
            record = next(self.reader)
        return record

    def after(self, item_id: str) -> Iterator[list[str]]:
        """Each following pool's candidate texts, nearest first, up to (not including) `item_id`'s pool again."""
        while not self.window or self.window[0]["id"] != item_id:
            if self.window:
                self.window.popleft()
            else:
                self.window.append(self._read())
        index = 1
        while True:
            if index == len(self.window):
                self.window.append(self._read())
            pool = self.window[index]
            if pool["id"] == item_id:
                return
            yield [candidate["text"] for candidate in pool["candidates"]]
            index += 1


def derived_pools(
    items_path: str | os.PathLike, pools_path: str | os.PathLike, derived_name: str, kind: TaskKind, seed: int
) -> Iterator[dict]:
    """The pool records of derived sampler `derived_name` (``<sampler>~<variant>``), one per item."""
    analysis, spec = methods.parse_variant(methods.split_derived(derived_name)[1])
    by_metric = analysis == "order" and spec["how"] in methods.RANKED_ORDERS
    if by_metric and not kind.has_oracle:
        raise PolyfuseError(f"{derived_name}: {spec['how']} needs a reference metric; {kind.name} is judged")
    oracle = make_scorer("oracle", kind) if by_metric else None
    following = FollowingPools(pools_path) if analysis == "injection" else None
    for item, pool in read_paired(items_path, pools_path):
        candidates = pool["candidates"]
        texts = [candidate["text"] for candidate in candidates]
        derivation: dict = {}  # what the record itself does not show: which candidates a subset kept
        shown: dict = {}  # the order a position-bias pool must be shown in, read by the fuse step
        if analysis == "subset":
            indices = analyses.subset(len(candidates), spec["size"], spec["index"], seed, item["id"])
            candidates, derivation = [candidates[i] for i in indices], {"indices": list(indices)}
        elif analysis == "injection":
            donors = following.after(item["id"])
            injected = analyses.inject(texts, spec["k"], spec["kind"], seed, item["id"], donors)
            candidates = [
                {**candidate, "text": text, "injected": how} if how else candidate
                for candidate, (text, how) in zip(candidates, injected, strict=True)
            ]
        else:
            scores = oracle.score(item, [text.strip() for text in texts]) if oracle else [None] * len(texts)
            shown = {"shown_order": analyses.order(scores, spec["how"], seed, item["id"])}
        yield {
            **pool,
            "sampler": derived_name,
            "candidates": candidates,
            "derived": {"from": pool["sampler"], "analysis": analysis, **spec, **derivation},
            **shown,
        }


def derive_pools(items_path, pools_path, out_path, derived_name: str, kind: TaskKind, seed: int) -> int:
    """Write derived sampler `derived_name`'s pool file atomically; returns the number of pool records."""
    return write_jsonl(out_path, derived_pools(items_path, pools_path, derived_name, kind, seed))
