"""The analyses' derived pools and their tables and figures, on hand-made files where the answer is known."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polyfuse import analysis_report, claims, methods, statistics
from polyfuse.config import analysis_variants, check_analyses
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl, write_jsonl
from polyfuse.pools import derive_pools
from polyfuse.tasks import task_kind

SETTINGS = {
    "bootstrap": 200,
    "confidence": 0.95,
    "seed": 0,
    "subsets": 2,
    "tasks": {"mgsm": {"kind": "math"}},
    "methods": ["single", "bon-loglik", "bon-mbr_chrf", "fusion-smol", "oracle"],
    "metrics": {"mgsm": "accuracy"},
}
IDS = ["a", "b", "c", "d"]


def write_items_and_pool(tmp_path, sampler="g"):
    """Four maths items whose right answer is candidate 2's (candidate 0 and 1 are wrong)."""
    items = [{"id": i, "task": "mgsm", "lang": "de", "input": f"{i}?", "reference": "7"} for i in IDS]
    pools = [
        {
            "id": i,
            "task": "mgsm",
            "lang": "de",
            "sampler": sampler,
            "prompt_hash": "p",
            "candidates": [{"text": f"Die Antwort ist {n}.", "model": sampler} for n in (3, 5, 7)],
        }
        for i in IDS
    ]
    write_jsonl(tmp_path / "items.jsonl", items)
    write_jsonl(tmp_path / f"{sampler}.jsonl", pools)
    return tmp_path / "items.jsonl", tmp_path / f"{sampler}.jsonl"


def write_scores(tmp_path, sampler: str, method: str, values: list[float]) -> str:
    path = tmp_path / "scores" / sampler / f"{method}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(
        path,
        [
            {"id": i, "task": "mgsm", "lang": "de", "sampler": sampler, "method": method, "values": {"accuracy": v}}
            for i, v in zip(IDS, values, strict=True)
        ],
    )
    return str(path)


def outputs_of(tmp_path, name: str) -> dict:
    return {
        key: str(tmp_path / f"{name}.{ext}")
        for key, ext in (("table", "csv"), ("markdown", "md"), ("figure", "png"), ("pdf", "pdf"))
    }


def derived(tmp_path, variant: str, kind: str = "math") -> list[dict]:
    items, pools = write_items_and_pool(tmp_path)
    name = methods.derived("g", variant)
    derive_pools(items, pools, tmp_path / f"{name}.jsonl", name, task_kind(kind), seed=3)
    return list(read_jsonl(tmp_path / f"{name}.jsonl"))


def test_a_subset_pool_keeps_the_chosen_candidates_and_says_which(tmp_path):
    for record in derived(tmp_path, "n2s1"):
        chosen = record["derived"]["indices"]
        assert record["sampler"] == "g~n2s1" and len(chosen) == 2 and chosen == sorted(chosen)
        assert [c["text"] for c in record["candidates"]] == [f"Die Antwort ist {(3, 5, 7)[i]}." for i in chosen]
        assert record["derived"] == {"from": "g", "analysis": "subset", "size": 2, "index": 1, "indices": chosen}


def test_an_injected_pool_replaces_k_candidates_with_another_items_answers(tmp_path):
    items, pools = write_items_and_pool(tmp_path)
    # Each item's own answers, two of them shared with the next item (a consensus the injection must not copy).
    answers = {i: [f"{i}: {n}", f"{i}: {n + 1}", "shared", "shared too"] for n, i in enumerate(IDS)}
    records = [{**pool, "candidates": [{"text": t} for t in answers[pool["id"]]]} for pool in read_jsonl(pools)]
    write_jsonl(pools, records)
    name = methods.derived("g", "fluent2")
    derive_pools(items, pools, tmp_path / f"{name}.jsonl", name, task_kind("math"), seed=3)
    for position, record in enumerate(read_jsonl(tmp_path / f"{name}.jsonl")):
        injected = [c["text"] for c in record["candidates"] if c.get("injected") == "fluent"]
        # nearest first, pool by pool, until the largest k of a 4-candidate pool (3) is met: the next item's own two,
        # then the one after's (the last item's next being the first)
        after = [answers[IDS[(position + step) % len(IDS)]][:2] for step in (1, 2)]
        assert len(set(injected)) == 2 and set(injected) <= {*after[0], *after[1]}
    garbage = derived(tmp_path, "garbage2")
    assert all(sum(bool(c.get("injected")) for c in record["candidates"]) == 2 for record in garbage)


def test_fluent_donors_come_from_the_items_after_the_next_when_it_has_too_few(tmp_path):
    items, pools = write_items_and_pool(tmp_path)
    answers = {i: [f"{i} first", f"{i} second", "same"] for i in IDS}
    answers[IDS[1]] = ["same", "same", "same"]  # nothing new to give the item before it
    records = [{**pool, "candidates": [{"text": t} for t in answers[pool["id"]]]} for pool in read_jsonl(pools)]
    write_jsonl(pools, records)
    name = methods.derived("g", "fluent2")
    derive_pools(items, pools, tmp_path / f"{name}.jsonl", name, task_kind("math"), seed=3)
    first = next(read_jsonl(tmp_path / f"{name}.jsonl"))
    assert sorted(c["text"] for c in first["candidates"] if c.get("injected")) == answers[IDS[2]][:2]


def test_ranked_orders_show_the_best_or_the_worst_candidate_first(tmp_path):
    assert {tuple(r["shown_order"]) for r in derived(tmp_path, "order-best-first")} == {(2, 0, 1)}
    assert {tuple(r["shown_order"]) for r in derived(tmp_path, "order-worst-first")} == {(0, 1, 2)}
    with pytest.raises(PolyfuseError, match="needs a reference metric"):
        derived(tmp_path, "order-best-first", kind="chat")


def test_nscaling_starts_at_the_single_sample_averages_subsets_and_ends_at_the_pool(tmp_path):
    _, pools = write_items_and_pool(tmp_path)
    scores = [
        write_scores(tmp_path, "g", "single", [0, 0, 0, 0]),
        write_scores(tmp_path, "g", "bon-loglik", [100, 100, 100, 0]),
        write_scores(tmp_path, "g", "fusion-smol", [100, 100, 100, 100]),
        write_scores(tmp_path, "g~n2s0", "bon-loglik", [100, 0, 0, 0]),
        write_scores(tmp_path, "g~n2s1", "bon-loglik", [100, 100, 0, 0]),
        write_scores(tmp_path, "g~n2s0", "fusion-smol", [0, 0, 0, 0]),
        write_scores(tmp_path, "g~n2s1", "fusion-smol", [100, 100, 100, 100]),
    ]
    fusions = [  # issue 17 item 1: every analysis table shows the parse share of the fusions it reports
        write_fusions(tmp_path, "g", [0, 1, 2], ["x"] * 4),
        write_fusions(tmp_path, "g~n2s0", [0, 1], ["x"] * 4, parsed=(False, False, True, True)),
        write_fusions(tmp_path, "g~n2s1", [0, 1], ["x"] * 4),
    ]
    outputs = outputs_of(tmp_path, "nscaling")
    analysis_report.run_nscaling(scores, [str(pools)], fusions, outputs=outputs, settings=SETTINGS)
    table = pd.read_csv(outputs["table"]).set_index(["method", "n"])
    assert table.loc[("fusion-smol", 2), "parsed_share"] == 0.75 and table.loc[("fusion-smol", 3), "parsed_share"] == 1
    assert table.loc["bon-loglik", "parsed_share"].isna().all() and pd.isna(
        table.loc[("fusion-smol", 1), "parsed_share"]
    )
    assert table.loc[("bon-loglik", 1), "mean"] == table.loc[("fusion-smol", 1), "mean"] == 0
    assert table.loc[("bon-loglik", 2), "mean"] == pytest.approx(37.5)  # items: 100, 50, 0, 0
    assert table.loc[("fusion-smol", 2), "mean"] == pytest.approx(50)
    assert table.loc[("bon-loglik", 3), "mean"] == pytest.approx(75) and (table["items"] == 4).all()
    assert (table["ci_low"] <= table["mean"]).all() and (table["mean"] <= table["ci_high"]).all()
    assert "N-scaling" in open(outputs["markdown"]).read()
    assert all(open(outputs[key], "rb").read(4) for key in ("figure", "pdf"))


def test_robustness_puts_the_sampled_pool_at_k_zero_of_every_kind(tmp_path):
    scores = [
        write_scores(tmp_path, "g", "fusion-smol", [100, 100, 100, 100]),
        write_scores(tmp_path, "g~garbage1", "fusion-smol", [0, 100, 100, 100]),
        write_scores(tmp_path, "g~fluent1", "fusion-smol", [0, 0, 100, 100]),
    ]
    fusions = [
        write_fusions(tmp_path, "g", [0, 1, 2], ["x"] * 4),
        write_fusions(tmp_path, "g~garbage1", [0, 1, 2], ["x"] * 4, parsed=(False, True, True, True)),
        write_fusions(tmp_path, "g~fluent1", [0, 1, 2], ["x"] * 4, parsed=(False, False, True, True)),
    ]
    outputs = outputs_of(tmp_path, "robustness")
    analysis_report.run_robustness(scores, fusions, outputs=outputs, settings=SETTINGS)
    table = pd.read_csv(outputs["table"]).set_index(["kind", "k"])
    assert table["mean"].to_dict() == {("fluent", 0): 100, ("fluent", 1): 50, ("garbage", 0): 100, ("garbage", 1): 75}
    shares = {("fluent", 0): 1, ("fluent", 1): 0.5, ("garbage", 0): 1, ("garbage", 1): 0.75}
    assert table["parsed_share"].to_dict() == shares


def write_fusions(tmp_path, sampler: str, order: list[int], texts: list[str], parsed=(True,) * 4) -> str:
    path = tmp_path / "outputs" / sampler / "fusion-smol.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(
        path,
        [
            {
                "id": i,
                "task": "mgsm",
                "lang": "de",
                "sampler": sampler,
                "method": "fusion-smol",
                "output": text,
                "order": order,
                "parse_status": "ok" if ok else "missing",
                "fallback": None if ok else "first",
            }
            for i, text, ok in zip(IDS, texts, parsed, strict=True)
        ],
    )
    return str(path)


def test_position_bias_counts_the_shown_position_each_fused_answer_draws_from(tmp_path):
    items, pools = write_items_and_pool(tmp_path)
    pool_paths = []
    for how in ("best-first", "worst-first"):
        name = methods.derived("g", methods.order_variant(how))
        derive_pools(items, pools, tmp_path / f"{name}.jsonl", name, task_kind("math"), seed=3)
        pool_paths.append(str(tmp_path / f"{name}.jsonl"))
    right, wrong = "Die Antwort ist 7.", "Die Antwort ist 3."
    fusions = [
        write_fusions(tmp_path, "g~order-best-first", [2, 0, 1], [right, right, right, wrong]),
        write_fusions(tmp_path, "g~order-worst-first", [0, 1, 2], [right, right, wrong, wrong]),
    ]
    scores = [
        write_scores(tmp_path, "g~order-best-first", "fusion-smol", [100, 100, 100, 0]),
        write_scores(tmp_path, "g~order-worst-first", "fusion-smol", [100, 100, 0, 0]),
    ]
    outputs = outputs_of(tmp_path, "position")
    analysis_report.run_position(scores, fusions, pool_paths, outputs=outputs, settings=SETTINGS)
    table = pd.read_csv(outputs["table"]).set_index("order")
    # best-first: the right answer is shown first (3 items), the wrong one second; worst-first: right is third.
    assert table.loc["best-first", ["from_1", "from_2", "from_3"]].tolist() == [0.75, 0.25, 0]
    assert table.loc["worst-first", ["from_1", "from_2", "from_3"]].tolist() == [0.5, 0, 0.5]
    assert table.loc["best-first", "mean"] == 75 and table.loc["worst-first", "mean"] == 50


def test_position_credit_of_a_copy_of_duplicates_is_shared_among_their_positions(tmp_path):
    # issue 17 item 7: candidates 0 and 2 are identical; best-first shows 2, 0, 1 and worst-first 0, 1, 2
    items, pools = write_items_and_pool(tmp_path)
    records = [
        {
            **pool,
            "candidates": [{"text": t} for t in ("Die Antwort ist 7.", "Die Antwort ist 3.", "Die Antwort ist 7.")],
        }
        for pool in read_jsonl(pools)
    ]
    write_jsonl(pools, records)
    pool_paths = [str(pools)]
    for how in ("best-first", "worst-first"):
        name = methods.derived("g", methods.order_variant(how))
        derive_pools(items, pools, tmp_path / f"{name}.jsonl", name, task_kind("math"), seed=3)
        pool_paths.append(str(tmp_path / f"{name}.jsonl"))
    copied = ["Die Antwort ist 7."] * 4
    fusions = [
        write_fusions(tmp_path, "g~order-best-first", [0, 2, 1], copied),
        write_fusions(tmp_path, "g~order-worst-first", [1, 0, 2], copied),
    ]
    scores = [
        write_scores(tmp_path, f"g~order-{how}", "fusion-smol", [100] * 4) for how in ("best-first", "worst-first")
    ]
    outputs = outputs_of(tmp_path, "position")
    analysis_report.run_position(scores, fusions, pool_paths, outputs=outputs, settings=SETTINGS)
    table = pd.read_csv(outputs["table"]).set_index("order")
    assert table.loc["best-first", ["from_1", "from_2", "from_3"]].tolist() == [0.5, 0.5, 0]
    assert table.loc["worst-first", ["from_1", "from_2", "from_3"]].tolist() == [0, 0.5, 0.5]


def test_diagnostics_count_wins_and_losses_and_the_copy_rate(tmp_path):
    _, pools = write_items_and_pool(tmp_path)
    fusions = [write_fusions(tmp_path, "g", [0, 1, 2], ["Die Antwort ist 7."] * 3 + ["Die Antwort ist 9."])]
    scores = [
        write_scores(tmp_path, "g", "single", [0, 100, 0, 100]),
        write_scores(tmp_path, "g", "oracle", [100, 100, 100, 100]),
        write_scores(tmp_path, "g", "fusion-smol", [100, 100, 100, 0]),
    ]
    outputs = outputs_of(tmp_path, "diagnostics")
    analysis_report.run_diagnostics(scores, fusions, [str(pools)], outputs=outputs, settings=SETTINGS)
    table = pd.read_csv(outputs["table"]).set_index("versus")
    assert table.loc["single", ["wins", "ties", "losses"]].tolist() == [2, 1, 1]
    assert table.loc["single", "mean_delta"] == 25 and table.loc["single", "loss_max"] == 100
    assert table.loc["oracle", ["wins", "ties", "losses"]].tolist() == [0, 3, 1]
    assert table.loc["oracle", "copied_whole"] == 0.75 and table.loc["oracle", "parsed"] == 1
    assert 0.75 < table.loc["oracle", "copy_ratio"] < 1


def test_a_fallback_is_not_the_fusors_text_so_it_counts_for_no_copying(tmp_path):
    _, pools = write_items_and_pool(tmp_path)
    first = "Die Antwort ist 3."  # the fallback: candidate 0, copied whole by construction
    fusions = [write_fusions(tmp_path, "g", [0, 1, 2], [first, first, first, "Sieben."], (False, False, False, True))]
    scores = [write_scores(tmp_path, "g", m, [0, 0, 0, 0]) for m in ("single", "fusion-smol")]
    outputs = outputs_of(tmp_path, "diagnostics")
    analysis_report.run_diagnostics(scores, fusions, [str(pools)], outputs=outputs, settings=SETTINGS)
    row = pd.read_csv(outputs["table"]).iloc[0]
    assert row["parsed"] == 0.25 and row["copied_whole"] == 0 and row["copy_ratio"] < 0.5


def test_diagnostics_leave_fallbacks_out_of_wins_ties_and_losses_and_count_them(tmp_path):
    _, pools = write_items_and_pool(tmp_path)
    first = "Die Antwort ist 3."  # issue 17 item 3: a fallback to candidate 0 is a forced tie with the single sample
    fusions = [
        write_fusions(tmp_path, "g", [0, 1, 2], [first, first, "Sieben.", "Sieben."], (False, False, True, True))
    ]
    scores = [
        write_scores(tmp_path, "g", "single", [0, 0, 0, 100]),
        write_scores(tmp_path, "g", "fusion-smol", [0, 0, 100, 0]),
    ]
    outputs = outputs_of(tmp_path, "diagnostics")
    analysis_report.run_diagnostics(scores, fusions, [str(pools)], outputs=outputs, settings=SETTINGS)
    row = pd.read_csv(outputs["table"]).set_index("versus").loc["single"]
    assert [row["items"], row["wins"], row["ties"], row["losses"], row["fallbacks"]] == [2, 1, 0, 1, 2]
    assert row["mean_delta"] == 0 and row["parsed_items"] == 2


ANALYSED = {
    "models": {"g": {"engine": "llamacpp"}},
    "study": {"n": 3, "samplers": ["g"]},
    "tasks": {
        "mgsm": {"kind": "math", "role": "test", "languages": ["de", "fr"]},
        "arena": {"kind": "chat", "role": "test", "languages": ["de"]},
    },
    "analyses": {
        "cells": {"mgsm": ["de"]},
        "sizes": [2],
        "subsets": 3,
        "injections": {"kinds": ["garbage"], "k": [1, 2]},
        "orders": ["best-first", "random"],
    },
}


def test_the_analysed_samplers_get_one_derived_pool_per_variant():
    assert analysis_variants(ANALYSED) == [
        "n2s0",
        "n2s1",
        "n2s2",
        "garbage1",
        "garbage2",
        "order-best-first",
        "order-random",
    ]
    assert all(methods.parse_variant(variant) for variant in analysis_variants(ANALYSED))
    check_analyses(ANALYSED)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sizes": [3]}, "3 is not below 'g'"),
        ({"subsets": 4}, "4 distinct subsets of 2 from 3 candidates do not exist"),
        ({"injections": {"kinds": ["garbage"], "k": [3]}}, "would leave none to find"),
        ({"cells": {"arena": ["de"]}}, "best-first and worst-first rank by a reference metric"),
        ({"cells": {"mgsm": ["ja"]}}, "analyses.cells.mgsm: unknown 'ja'"),
        ({"cells": {"wmt": ["de"]}}, "analyses.cells: unknown 'wmt'"),
        ({"samplers": ["h"]}, "analyses.samplers: unknown 'h'"),
    ],
)
def test_analyses_that_cannot_be_run_are_config_errors(change, message):
    config = copy.deepcopy(ANALYSED)
    config["analyses"].update(change)
    with pytest.raises(PolyfuseError, match=message):
        check_analyses(config)


def write_task_scores(tmp_path, task, metric, method, values_by_lang, sampler="g") -> str:
    values = {lang: [{metric: v} for v in vs] for lang, vs in values_by_lang.items()}
    return write_metric_scores(tmp_path / "claims", task, method, values, sampler)


def write_metric_scores(root, task, method, values_by_lang, sampler) -> str:
    """One method's item scores: per language, each item's values by metric."""
    path = root / task / sampler / f"{method}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(
        path,
        [
            {"id": f"{lang}{n}", "task": task, "lang": lang, "sampler": sampler, "method": method, "values": values}
            for lang, items in values_by_lang.items()
            for n, values in enumerate(items)
        ],
    )
    return str(path)


def write_fusions_of(scores_path: str, unparsed=()) -> str:
    """The fusion output records behind a fusion method's item scores; the items in `unparsed` are fallbacks."""
    path = Path(scores_path).with_suffix(".fused.jsonl")
    records = [
        {key: record[key] for key in ("id", "task", "lang", "sampler", "method")}
        | ({"parse_status": "missing", "fallback": "first"} if record["id"] in unparsed else {"parse_status": "ok"})
        for record in read_jsonl(scores_path)
    ]
    write_jsonl(path, records)
    return str(path)


def all_parsed(scores: list[str]) -> pd.DataFrame:
    """Every fused answer behind these scores the fusor's own."""
    fusions = [path for path in scores if Path(path).stem.startswith("fusion-") and " vs " not in path]
    return analysis_report.fused_items([write_fusions_of(path) for path in fusions])


def copy_row(table: pd.DataFrame) -> pd.Series:
    return table[table["claim"].str.startswith("The fused text")].iloc[0]


def test_claims_read_reproduced_not_reproduced_inconclusive_and_not_measurable(tmp_path):
    settings = SETTINGS | {"tasks": {"arena": {"kind": "chat"}, "mgsm": {"kind": "math"}}}
    scores = [
        # chat: FusioN ahead on all 8 items of each language: significant in each (exact p = 2/2^8, Holm over 2)
        write_task_scores(tmp_path, "arena", "winrate", "fusion-smol", {"de": [75] * 8, "fr": [75] * 8}),
        write_task_scores(tmp_path, "arena", "winrate", "bon-loglik", {"de": [50] * 8, "fr": [50] * 8}),
        # a head-to-head's verdicts (recorded under its label) are no method of their own
        write_task_scores(tmp_path, "arena", "winrate", "fusion-smol vs bon-loglik", {"de": [0] * 4, "fr": [0] * 4}),
        # maths: FusioN ahead on every item, so "BoN beats FusioN" is significantly not reproduced
        write_task_scores(tmp_path, "mgsm", "accuracy", "fusion-smol", {"de": [100] * 8}),
        write_task_scores(tmp_path, "mgsm", "accuracy", "bon-loglik", {"de": [0] * 8}),
    ]
    fusions = [write_fusions_of(scores[0]), write_fusions_of(scores[3], unparsed={"de7"})]  # maths: 7 of 8 parsed
    outputs = {"claims": str(tmp_path / "README.md")}
    claims.run_claims(scores, [], [], [], [], fusions, outputs=outputs, settings=settings)
    text = open(outputs["claims"]).read()
    verdicts = dict(
        re.findall(
            r"^\| (Chat|WMT24\+\+|MGSM|N-scaling|Fusion improves|The fused text)[^|]*\|[^|]*\|[^|]*\| (.+?) +\|$",
            text,
            re.M,
        )
    )
    assert verdicts == {
        "Chat": "reproduced",
        "WMT24++": "not measurable",
        "MGSM": "not reproduced",
        "N-scaling": "not measurable",
        "Fusion improves": "not measurable",
        "The fused text": "not measurable",
    }
    assert "significantly ahead in 2/2 languages (de, fr), behind in 0" in text and text.count("| Chat") == 1
    assert "Holm p=" in text and "Holm's step-down procedure" in text
    assert (
        "88% of the fused answers tested parsed; on the 7 items whose fusions all parsed (the fusor's own): -100.0"
        in (text)
    )
    diagnostics = pd.DataFrame(
        [{"task": "mgsm", "lang": "de", "sampler": "g", "method": "fusion-smol", "copy_ratio": 0.9, "parsed": 1.0}]
    ).assign(copy_ratio_low=0.85, copy_ratio_high=0.95, parsed_items=20)
    parsed = analysis_report.fused_items(fusions)
    assert copy_row(claims.claims_table(scores, None, diagnostics, None, parsed, settings))["verdict"] == "reproduced"
    inconclusive = diagnostics.assign(copy_ratio_low=0.7)
    assert (
        copy_row(claims.claims_table(scores, None, inconclusive, None, parsed, settings))["verdict"] == "inconclusive"
    )
    # issue 17 item 4: two parsed answers out of 100, both whole copies, give [100, 100]: no evidence
    two_copies = diagnostics.assign(
        copy_ratio=1.0, copy_ratio_low=1.0, copy_ratio_high=1.0, parsed=0.02, parsed_items=2
    )
    row = copy_row(claims.claims_table(scores, None, two_copies, None, parsed, settings))
    assert row["verdict"] == "inconclusive" and "over 2 parsed (2%), under 10: no evidence" in row["found"]
    # Mostly fallbacks: FusioN's scores are not the fusor's, so no verdict either way.
    fallbacks = parsed.assign(parsed=parsed.index % 4 == 0)  # a quarter parsed in each task
    table = claims.claims_table(scores, None, None, None, fallbacks, settings).set_index("claim")["verdict"]
    assert table.filter(like="Chat").tolist() == ["inconclusive"] and table.filter(like="MGSM").tolist() == [
        "inconclusive"
    ]
    none = claims.claims_table(scores, None, None, None, parsed.assign(parsed=False), settings)
    chat = none[none["claim"].str.startswith("Chat")].iloc[0]
    assert "0% of the fused answers tested parsed: no item has the fusor's own answer" in chat["found"]
    assert "nan" not in chat["found"] and chat["verdict"] == "inconclusive"


def test_holm_adjusts_as_the_step_down_procedure_defines():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> at least the one before: 0.06
    assert statistics.holm_adjust([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert statistics.holm_adjust([0.5]).tolist() == [0.5] and statistics.holm_adjust([0.6, 0.7]).tolist() == [1.0, 1.0]


def test_two_claims_each_significant_alone_are_not_both_verdicts_after_holm(tmp_path):
    # issue 17 item 6: 6 items all one way give p = 2/2^6 = 0.031 per claim; Holm over the 2 tested rows gives 0.062
    settings = SETTINGS | {"tasks": {"wmt24pp": {"kind": "translation"}, "mgsm": {"kind": "math"}}}
    scores = [
        write_task_scores(tmp_path, "wmt24pp", "chrf", "fusion-smol", {"de": [60] * 6}),
        write_task_scores(tmp_path, "wmt24pp", "chrf", "oracle", {"de": [50] * 6}),
        write_task_scores(tmp_path, "mgsm", "accuracy", "bon-loglik", {"de": [100] * 6}),
        write_task_scores(tmp_path, "mgsm", "accuracy", "fusion-smol", {"de": [0] * 6}),
    ]
    table = claims.claims_table(scores, None, None, None, all_parsed(scores), settings)
    tested = table[table["claim"].str.startswith(("WMT24++: FusioN above the oracle", "MGSM"))]
    assert tested["verdict"].tolist() == ["inconclusive", "inconclusive"]
    assert all("(p=0.031, n=6 items, MDE 0: no spread observed)" in found for found in tested["found"])  # no spread
    assert all("Holm p=0.062 (of 2 tests)" in found for found in tested["found"])


def test_each_claim_row_states_the_smallest_difference_its_test_could_detect(tmp_path):
    """(t_0.975 + t_0.8 at 7 df) * sd / sqrt(8), from scipy's t quantiles, not the code under test."""
    from scipy import stats

    settings = SETTINGS | {"tasks": {"wmt24pp": {"kind": "translation"}}}
    fused = [61, 52, 70, 48, 66, 55, 59, 63]
    scores = [
        write_task_scores(tmp_path, "wmt24pp", "chrf", "fusion-smol", {"de": fused}),
        write_task_scores(tmp_path, "wmt24pp", "chrf", "bon-loglik", {"de": [55] * 8}),
    ]
    table = claims.claims_table(scores, None, None, None, all_parsed(scores), settings)
    row = table[table["claim"] == "WMT24++: FusioN above BoN"].iloc[0]
    expected = (stats.t.ppf(0.975, 7) + stats.t.ppf(0.8, 7)) * np.std(fused, ddof=1) / np.sqrt(8)
    assert f"n=8 items, MDE {expected:.1f})" in row["found"]


def test_most_languages_counts_significant_wins_not_directions(tmp_path):
    # issue 17 item 6: ahead on every item of both languages, but 4 items a language cannot be significant there
    settings = SETTINGS | {"tasks": {"arena": {"kind": "chat"}}}
    scores = [
        write_task_scores(tmp_path, "arena", "winrate", "fusion-smol", {"de": [75] * 4, "fr": [75] * 4}),
        write_task_scores(tmp_path, "arena", "winrate", "bon-loglik", {"de": [50] * 4, "fr": [50] * 4}),
    ]
    table = claims.claims_table(scores, None, None, None, all_parsed(scores), settings)
    chat = table[table["claim"].str.startswith("Chat")].iloc[0]
    assert "significantly ahead in 0/2 languages (none), behind in 0" in chat["found"]
    assert chat["verdict"] == "inconclusive"  # overall p = 2/2^8 alone would have read reproduced


def test_a_chat_win_carried_by_one_language_is_not_most_languages(tmp_path):
    settings = SETTINGS | {"tasks": {"arena": {"kind": "chat"}}}
    scores = [
        write_task_scores(
            tmp_path, "arena", "winrate", "fusion-smol", {"de": [100] * 12, "fr": [40] * 2, "it": [40] * 2}
        ),
        write_task_scores(tmp_path, "arena", "winrate", "bon-loglik", {"de": [0] * 12, "fr": [50] * 2, "it": [50] * 2}),
    ]
    table = claims.claims_table(scores, None, None, None, all_parsed(scores), settings)
    chat = table[table["claim"].str.startswith("Chat")].iloc[0]
    assert "significantly ahead in 1/3 languages (de)" in chat["found"] and chat["verdict"] == "inconclusive"


def test_the_nscaling_claim_pairs_fusion_at_two_with_the_single_sample_and_bon_item_by_item(tmp_path):
    settings = SETTINGS | {"tasks": {"mgsm": {"kind": "math"}}}
    _, pools = write_items_and_pool(tmp_path)
    ids8 = IDS  # four items: FusioN at N = 2 right on all, single and BoN wrong on all
    scores = [
        write_scores(tmp_path, "g", "single", [0] * 4),
        write_scores(tmp_path, "g", "bon-loglik", [0] * 4),
        write_scores(tmp_path, "g", "fusion-smol", [100] * 4),
        *(
            write_scores(tmp_path, f"g~n2s{i}", m, v)
            for i in (0, 1)
            for m, v in (("bon-loglik", [0] * 4), ("fusion-smol", [100] * 4))
        ),
    ]
    points = analysis_report.nscaling_points(
        analysis_report.primary_scores(scores, settings["tasks"]), analysis_report.pool_sizes([str(pools)])
    )
    fused = analysis_report.fused_items([write_fusions_of(path) for path in scores if "fusion" in path])
    rows = [row for row in claims.nscaling_claims(points, settings, fused, {}) if "N = 2 already" in row["claim"]]
    assert [row["found"].split(":")[1].strip() for row in rows] == ["fusion-smol − single", "fusion-smol − bon-loglik"]
    assert all("+100.0" in row["found"] and f"n={len(ids8)} items" in row["found"] for row in rows)
    assert {row["verdict"] for row in rows} == {"inconclusive"}  # four items: the smallest p a sign flip gives is 1/8


def test_the_nscaling_claims_parse_share_is_the_subset_fusions_it_tests(tmp_path):
    # issue 17 item 2: the full pool's fusions all parsed, the N = 2 subsets' mostly not: no verdict, and it says so
    settings = SETTINGS | {"tasks": {"mgsm": {"kind": "math"}}}
    _, pools = write_items_and_pool(tmp_path)
    scores = [
        write_scores(tmp_path, "g", "single", [0] * 4),
        write_scores(tmp_path, "g", "fusion-smol", [100] * 4),
        *(write_scores(tmp_path, f"g~n2s{i}", m, v) for i in (0, 1) for m, v in (("fusion-smol", [100] * 4),)),
    ]
    points = analysis_report.nscaling_points(
        analysis_report.primary_scores(scores, settings["tasks"]), analysis_report.pool_sizes([str(pools)])
    )
    fusions = [write_fusions_of(scores[1]), write_fusions_of(scores[2], {"a", "b", "c"}), write_fusions_of(scores[3])]
    row = claims.nscaling_claims(points, settings, analysis_report.fused_items(fusions), {})[
        0
    ]  # against the single sample
    # 5 of the 8 subset fusions parsed; only item d's two both did
    assert "62% of the fused answers tested parsed; on the 1 items whose fusions all parsed" in row["found"]
    assert row["verdict"] == "inconclusive"
    row = claims.nscaling_claims(points, settings, analysis_report.fused_items(fusions[:1]), {})[
        0
    ]  # no subset fusion records
    assert row["verdict"] == claims.NOT_MEASURABLE and "no record says which" in row["found"]


def test_bon_ahead_of_fusion_through_its_fallbacks_alone_is_no_verdict(tmp_path):
    # issue 17 item 2: 16 of 40 fused answers are fallbacks that BoN beats; on the fusor's own 24, BoN is no better
    settings = SETTINGS | {"tasks": {"mgsm": {"kind": "math"}}}
    scores = [
        write_task_scores(tmp_path, "mgsm", "accuracy", "bon-loglik", {"de": [100] * 16 + [100] * 20 + [0] * 4}),
        write_task_scores(tmp_path, "mgsm", "accuracy", "fusion-smol", {"de": [0] * 16 + [100] * 24}),
    ]
    fused = analysis_report.fused_items([write_fusions_of(scores[1], unparsed={f"de{n}" for n in range(16)})])
    table = claims.claims_table(scores, None, None, None, fused, settings)
    row = table[table["claim"].str.startswith("MGSM")].iloc[0]
    assert "bon-loglik − fusion-smol: +30.0" in row["found"]  # as deployed, BoN is well ahead
    assert (
        "60% of the fused answers tested parsed; on the 24 items whose fusions all parsed (the fusor's own): -16.7"
        in (row["found"])
    )
    assert row["verdict"] == "inconclusive"


def test_the_single_sample_is_on_the_curves_of_its_own_cells_methods_only():
    items = pd.DataFrame(
        [
            {
                "task": t,
                "lang": "de",
                "sampler": "g",
                "method": m,
                "metric": "accuracy",
                "id": "a",
                "value": 1.0,
                "base": "g",
                "variant": "",
                "family": "",
            }
            for t, m in (("mgsm", "single"), ("mgsm", "fusion-x"), ("wmt", "single"), ("wmt", "fusion-y"))
        ]
    )
    points = analysis_report.nscaling_points(items, {("mgsm", "de", "g"): 3, ("wmt", "de", "g"): 3})
    ones = points[points["n"] == 1]
    assert sorted(zip(ones["task"], ones["method"], strict=True)) == [("mgsm", "fusion-x"), ("wmt", "fusion-y")]


def test_compute_counts_sampling_the_scorers_reading_and_the_fusors_call(tmp_path):
    items, pools = write_items_and_pool(tmp_path)
    costed = [
        {
            **pool,
            "candidates": [
                {**c, "tokens_in": 10, "tokens_out": 5 + i, "seconds": 1.0} for i, c in enumerate(pool["candidates"])
            ],
        }
        for pool in read_jsonl(pools)
    ]
    write_jsonl(pools, costed)
    subset = tmp_path / "g~n2s0.jsonl"
    derive_pools(items, pools, subset, "g~n2s0", task_kind("math"), seed=3)
    fusions = []
    for sampler in ("g", "g~n2s0"):
        path = tmp_path / "outputs" / sampler / "fusion-smol.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        cost = {"tokens_in": 100, "tokens_out": 20, "seconds": 2.0}
        fused = {"task": "mgsm", "lang": "de", "sampler": sampler, "method": "fusion-smol", "parse_status": "ok"}
        write_jsonl(path, [{"id": i, **fused, "cost": cost} for i in IDS])
        fusions.append(str(path))
    # each selection's record says what its scorer spent, as measured: loglik read 40 tokens in 3 calls, MBR no model
    selected = {
        "bon-loglik": {"calls": 3, "tokens_in": 40, "tokens_out": 0, "seconds": 0.5},
        "bon-mbr_chrf": {"calls": 0, "tokens_in": 0, "tokens_out": 0, "seconds": 0.25},
        "bon-reward_model": None,  # scored before costs were kept: not measured
    }
    for sampler in ("g", "g~n2s0"):
        for method, cost in selected.items():
            path = tmp_path / "outputs" / sampler / f"{method}.jsonl"
            cell = {"task": "mgsm", "lang": "de", "sampler": sampler, "method": method}
            write_jsonl(path, [{"id": i, **cell, "cost": cost} for i in IDS])
            fusions.append(str(path))
    scores = [
        write_scores(tmp_path, sampler, method, [100, 0, 100, 0])
        for sampler in ("g", "g~n2s0")
        for method in ("bon-loglik", "bon-mbr_chrf", "bon-reward_model", "fusion-smol")
    ] + [write_scores(tmp_path, "g", "single", [0, 0, 0, 0])]
    outputs = outputs_of(tmp_path, "compute")
    settings = SETTINGS | {"methods": [*SETTINGS["methods"], "bon-reward_model"]}
    analysis_report.run_compute(scores, [str(pools), str(subset)], fusions, outputs=outputs, settings=settings)
    table = pd.read_csv(outputs["table"]).set_index(["method", "n"])
    sampled = 3 * 10 + 5 + 6 + 7  # every candidate's prompt and output tokens
    assert table.loc[("bon-loglik", 1), "tokens"] == table.loc[("fusion-smol", 1), "tokens"] == 15  # the single sample
    assert table.loc[("bon-mbr_chrf", 3), "tokens"] == sampled and table.loc[("bon-mbr_chrf", 3), "calls"] == 3
    assert table.loc[("bon-mbr_chrf", 3), "seconds"] == 3.25
    assert table.loc[("bon-loglik", 3), "tokens"] == sampled + 40 and table.loc[("bon-loglik", 3), "calls"] == 6
    assert table.loc[("bon-loglik", 3), "seconds"] == 3.5
    assert table.loc[("bon-reward_model", 3), ["tokens", "calls", "seconds"]].isna().all()
    assert table.loc[("fusion-smol", 3), "tokens"] == sampled + 120 and table.loc[("fusion-smol", 3), "seconds"] == 5
    assert 2 * 10 + 2 * 5 + 120 <= table.loc[("fusion-smol", 2), "tokens"] <= 2 * 10 + 13 + 120
    assert table.loc["fusion-smol", "parsed_share"].dropna().tolist() == [1.0, 1.0]  # at N = 2 and 3


def write_cell(tmp_path, method: str, values: list[float], **record) -> str:
    """A method's item scores (and, for a fusion, its outputs) on one maths cell of len(values) items."""
    path = tmp_path / f"{method}.jsonl"
    rows = [
        {"id": f"i{n}", "task": "mgsm", "lang": "de", "sampler": "g", "method": method, "values": {"accuracy": v}}
        for n, v in enumerate(values)
    ]
    write_jsonl(path, [{**row, **record} for row in rows])
    return str(path)


@pytest.mark.parametrize(
    ("bon_small", "bon_big", "verdict"),
    [([50.0] * 12, [50.0] * 12, "reproduced"), ([0.0] * 12, [100.0] * 12, "inconclusive")],  # selection rising as much
)
def test_the_fusor_analysis_finds_fusion_rising_with_size_and_selection_flat(tmp_path, bon_small, bon_big, verdict):
    settings = SETTINGS | {"fusors": {"models": ["small", "big"], "scorer": "loglik"}}
    flat = [50.0] * 12
    scores = [
        write_cell(tmp_path, "fusion-small", [0.0] * 12, parse_status="ok"),
        write_cell(tmp_path, "fusion-big", [100.0] * 12, parse_status="ok"),
        write_cell(tmp_path, "bon-loglik@small", bon_small),
        write_cell(tmp_path, "bon-loglik@big", bon_big),
        write_cell(tmp_path, "single", flat),  # another method of the cell: not in the analysis
    ]
    outputs = outputs_of(tmp_path, "fusors")
    analysis_report.run_fusors(scores, scores[:2], outputs=outputs, settings=settings)
    table = pd.read_csv(outputs["table"]).set_index(["role", "model"])
    assert list(table.index) == [("BoN scorer", "small"), ("BoN scorer", "big"), ("fusor", "small"), ("fusor", "big")]
    assert table.loc[("fusor", "big"), "gain"] == pytest.approx(100.0) and table.loc[("fusor", "big"), "p"] < 0.01
    assert table.loc[("fusor", "small"), "mean"] == 0.0 and pd.isna(table.loc[("fusor", "small"), "gain"])
    assert (table.xs("fusor")["parsed"] == 1.0).all() and table.xs("BoN scorer")["parsed"].isna().all()
    assert table.loc[("BoN scorer", "big"), "gain"] == pytest.approx(bon_big[0] - bon_small[0])
    assert table.loc[("fusor", "big"), "interaction"] == pytest.approx(100.0 - (bon_big[0] - bon_small[0]))
    assert table.loc[("fusor", "big"), "interaction_n"] == 12
    assert open(outputs["figure"], "rb").read(4) == b"\x89PNG"
    (row,) = claims.fusor_claim(pd.read_csv(outputs["table"]), settings)
    assert row["verdict"] == verdict and "small → big" in row["found"] and "n=12 paired items" in row["found"]


def test_the_fusor_claim_tests_the_fusors_gain_against_the_scorers_item_by_item(tmp_path):
    # issue 17 item 5: the fusor +3 (significant alone), the scorer +5 (noisy, not significant alone): per item the
    # fusor gains less than the scorer, so fusion does not improve with size more than selection does
    settings = SETTINGS | {"fusors": {"models": ["small", "big"], "scorer": "loglik"}}
    scores = [
        write_cell(tmp_path, "fusion-small", [50.0] * 12, parse_status="ok"),
        write_cell(tmp_path, "fusion-big", [53.0] * 12, parse_status="ok"),
        write_cell(tmp_path, "bon-loglik@small", [50.0] * 12),
        write_cell(tmp_path, "bon-loglik@big", [80.0, 30.0] * 6),
    ]
    outputs = outputs_of(tmp_path, "fusors")
    analysis_report.run_fusors(scores, scores[:2], outputs=outputs, settings=settings)
    table = pd.read_csv(outputs["table"]).set_index(["role", "model"])
    assert table.loc[("fusor", "big"), "p"] < 0.05 and table.loc[("BoN scorer", "big"), "p"] > 0.05
    (row,) = claims.fusor_claim(pd.read_csv(outputs["table"]), settings)
    assert "fusor gain − scorer gain per item -2.0" in row["found"] and row["verdict"] == "inconclusive"


def test_the_fusor_claim_needs_the_fusors_own_answers_and_the_analysis(tmp_path):
    settings = SETTINGS | {"fusors": {"models": ["small", "big"], "scorer": "loglik"}}
    scores = [
        write_cell(tmp_path, "fusion-small", [0.0] * 12, parse_status="missing"),
        write_cell(tmp_path, "fusion-big", [100.0] * 12, parse_status="missing"),  # every answer a fallback
        write_cell(tmp_path, "bon-loglik@small", [50.0] * 12),
        write_cell(tmp_path, "bon-loglik@big", [50.0] * 12),
    ]
    outputs = outputs_of(tmp_path, "fusors")
    analysis_report.run_fusors(scores, scores[:2], outputs=outputs, settings=settings)
    (row,) = claims.fusor_claim(pd.read_csv(outputs["table"]), settings)
    assert row["verdict"] == "inconclusive" and "parsed 0% → 0%" in row["found"]
    assert claims.fusor_claim(None, settings)[0]["verdict"] == claims.NOT_MEASURABLE
    # The smallest fusor's answers all fallbacks: its "gain" compares the largest with the fallback's text.
    write_cell(tmp_path, "fusion-big", [100.0] * 12, parse_status="ok")
    analysis_report.run_fusors(scores, scores[:2], outputs=outputs, settings=settings)
    (row,) = claims.fusor_claim(pd.read_csv(outputs["table"]), settings)
    assert row["verdict"] == "inconclusive" and "parsed 0% → 100%" in row["found"]


def write_multi_scores(tmp_path, task, method, values_by_metric, sampler="g", lang="de") -> str:
    """One method's item scores on several metrics at once (as a score file and a COMET file would give them)."""
    count = len(next(iter(values_by_metric.values())))
    items = [{metric: values[n] for metric, values in values_by_metric.items()} for n in range(count)]
    return write_metric_scores(tmp_path / "multi", task, method, {lang: items}, sampler)


def test_every_claim_of_the_paper_has_a_row_or_says_why_it_cannot_be_measured(tmp_path):
    # issue 17 item 13: a study of one maths cell, no analyses and no synthetic data
    settings = SETTINGS | {"tasks": {"mgsm": {"kind": "math"}}}
    scores = [
        write_task_scores(tmp_path, "mgsm", "accuracy", "bon-loglik", {"de": [100] * 6}),
        write_task_scores(tmp_path, "mgsm", "accuracy", "fusion-smol", {"de": [0] * 6}),
    ]
    table = claims.claims_table(scores, None, None, None, all_parsed(scores), settings)
    expected = [
        "Chat (m-ArenaHard): FusioN beats BoN",
        "WMT24++: FusioN above BoN",
        "WMT24++: FusioN above the oracle",
        "MGSM: BoN beats FusioN",
        "N-scaling: FusioN at N = 2",
        "N-scaling: BoN at twice the samples",
        "N-scaling: FusioN's gains level off past N ≈ 7",
        "Fusion improves with fusor size",
        "The fused text takes most",
        "Setting 2",
    ]
    for start in expected:
        rows = table[table["claim"].str.startswith(start)]
        assert len(rows), start
        unmeasured = rows[rows["verdict"] == claims.NOT_MEASURABLE]
        assert all(found.strip() for found in unmeasured["found"]), start  # each says why
    assert table.set_index("claim").filter(like="MGSM", axis=0)["found"].str.startswith("accuracy; ").all()


def test_translation_claims_read_comet_and_its_oracle_where_the_study_computed_it(tmp_path):
    # issue 17 item 13: chrF says the oracle is ahead, COMET says FusioN is: the rows read COMET and oracle-comet
    settings = SETTINGS | {"tasks": {"wmt24pp": {"kind": "translation"}}, "comet_model": "Unbabel/XCOMET-XL"}
    six = 6
    scores = [
        write_multi_scores(tmp_path, "wmt24pp", "fusion-smol", {"chrf": [40] * six, "comet": [0.9] * six}),
        write_multi_scores(tmp_path, "wmt24pp", "bon-loglik", {"chrf": [45] * six, "comet": [0.8] * six}),
        write_multi_scores(tmp_path, "wmt24pp", "oracle", {"chrf": [60] * six, "comet": [0.85] * six}),
        write_multi_scores(tmp_path, "wmt24pp", "oracle-comet", {"chrf": [50] * six, "comet": [0.88] * six}),
    ]
    table = claims.claims_table(scores, None, None, None, all_parsed(scores), settings).set_index("claim")
    oracle = table.loc["WMT24++: FusioN above the oracle selection"]
    assert oracle["found"].startswith("COMET (Unbabel/XCOMET-XL); g: fusion-smol − oracle-comet: +0.0")
    bon = table.loc["WMT24++: FusioN above BoN"]
    assert bon["found"].startswith("COMET (Unbabel/XCOMET-XL); g: fusion-smol − bon-loglik: +0.1")
    # without COMET numbers (the model unavailable): chrF, and the chrF oracle
    unscored = [
        write_multi_scores(tmp_path / "u", "wmt24pp", m, {"chrf": [v] * six, "comet": [None] * six})
        for m, v in (("fusion-smol", 40), ("oracle", 60), ("oracle-comet", 50))
    ]
    table = claims.claims_table(unscored, None, None, None, all_parsed(unscored), settings).set_index("claim")
    assert table.loc["WMT24++: FusioN above the oracle selection", "found"].startswith(
        "chrF; g: fusion-smol − oracle: -20.0"
    )
    # COMET computed but no COMET oracle (comet.oracle: false): no row reads the chrF oracle against COMET
    no_oracle = [path for path in scores if "oracle-comet" not in path]
    table = claims.claims_table(no_oracle, None, None, None, all_parsed(no_oracle), settings).set_index("claim")
    row = table.loc["WMT24++: FusioN above the oracle selection"]
    assert row["verdict"] == claims.NOT_MEASURABLE and "oracle-comet" in row["found"]


def nscaling_frame(values_by_n: dict[tuple[str, int], list[float]]) -> pd.DataFrame:
    """N-scaling points of one maths cell: (method, N) → per-item values."""
    return pd.DataFrame(
        [
            {"task": "mgsm", "lang": "de", "sampler": "g", "method": method, "n": n, "id": f"i{k}", "value": value}
            for (method, n), values in values_by_n.items()
            for k, value in enumerate(values)
        ]
    )


def subset_fused(sizes: list[int], items: int) -> pd.DataFrame:
    """Every N-scaling subset fusion of each size parsed, for `items` items."""
    return pd.DataFrame(
        [
            {
                "task": "mgsm",
                "lang": "de",
                "sampler": f"g~n{n}s0",
                "method": "fusion-smol",
                "id": f"i{k}",
                "parsed": True,
            }
            | {"base": "g", "variant": f"n{n}s0"}
            for n in sizes
            for k in range(items)
        ]
    )


def test_bon_at_twice_the_samples_is_paired_with_fusion_at_n(tmp_path):
    # issue 17 item 13: FusioN at N = 2 right on 12 items, BoN at N = 4 wrong on them: BoN needs more than 2N
    settings = SETTINGS | {"tasks": {"mgsm": {"kind": "math"}}}
    points = nscaling_frame(
        {
            ("fusion-smol", 1): [0] * 12,
            ("bon-loglik", 1): [0] * 12,
            ("fusion-smol", 2): [100] * 12,
            ("bon-loglik", 2): [0] * 12,
            ("fusion-smol", 4): [100] * 12,
            ("bon-loglik", 4): [0] * 12,
        }
    )
    rows = claims.twice_claim(points, settings, subset_fused([2], 12), "accuracy")
    (row,) = rows
    assert "FusioN at N = 2, BoN at N = 4; g: fusion-smol − bon-loglik: +100.0" in row["found"]
    assert "n=12 items" in row["found"] and row["decide"](row["p"]) == "reproduced"
    # without N and 2N both, the row says what to add
    (missing,) = claims.twice_claim(points[points["n"] != 4], settings, subset_fused([2], 12), "accuracy")
    assert missing["verdict"] == claims.NOT_MEASURABLE and "analyses.sizes" in missing["found"]


def test_the_level_off_claim_compares_the_gain_per_candidate_before_and_past_seven(tmp_path):
    # issue 17 item 13: +60 over the first six added candidates (+10 each), nothing past 7: levelled off
    settings = SETTINGS | {"tasks": {"mgsm": {"kind": "math"}}}
    points = nscaling_frame(
        {("fusion-smol", 1): [20] * 12, ("fusion-smol", 7): [80] * 12, ("fusion-smol", 9): [80] * 12}
    )
    fused = subset_fused([7], 12).assign(n=7, sampler="g")
    (row,) = claims.level_off_claim(points, settings, fused, "accuracy")
    assert "from N = 1 to 7 +10.00, from 7 to 9 +0.00; difference +10.00" in row["found"]
    assert row["decide"](row["p"]) == "reproduced" and "100% of those fusions parsed" in row["found"]
    still_rising = nscaling_frame(
        {("fusion-smol", 1): [20] * 12, ("fusion-smol", 7): [50] * 12, ("fusion-smol", 9): [80] * 12}
    )
    (row,) = claims.level_off_claim(still_rising, settings, fused, "accuracy")
    assert row["decide"](row["p"]) == "not reproduced"  # +5 per candidate before 7, +15 after
    (row,) = claims.level_off_claim(points[points["n"] < 9], settings, fused, "accuracy")
    assert row["verdict"] == claims.NOT_MEASURABLE and "more than 7 candidates" in row["found"]


def test_setting_two_rows_compare_the_students_of_distill_compare(tmp_path):
    # issue 17 item 13: downstream win rate, GeoFactX accuracy in most languages and language correctness, the
    # teacher-pool order (BoN data above a single sample's)
    distill = {
        "sets": {
            "single": {"pool": "teachers", "method": "single"},
            "bon": {"pool": "teachers", "method": "bon-loglik"},
            "fusion": {"pool": "teachers", "method": "fusion-smol"},
        },
        "compare": ["bon", "fusion"],
        "evaluate": ["arena", "geofactx"],
    }
    settings = SETTINGS | {"tasks": {"arena": {"kind": "chat"}, "geofactx": {"kind": "factqa"}}, "distill": distill}
    settings["bootstrap"] = 2000  # 8 items a language: the exact sign-flip test (2^8 patterns), p = 2/256 each
    langs = ("en", "hi", "ja", "sw", "th")

    def student(name, task, metric, values):
        return write_task_scores(tmp_path, task, metric, "single", values, sampler=f"student-{name}")

    scores = [
        student("fusion", "arena", "winrate", {"de": [75] * 8}),
        student("bon", "arena", "winrate", {"de": [50] * 8}),
        student("single", "arena", "winrate", {"de": [25] * 8}),
        # accuracy: FusioN data right on every item of four languages, as BoN data in the fifth
        student("fusion", "geofactx", "accuracy", {lang: [100] * 8 for lang in langs}),
        student("bon", "geofactx", "accuracy", {lang: [100 if lang == "th" else 0] * 8 for lang in langs}),
    ]
    table = claims.claims_table(scores, None, None, None, all_parsed(scores), settings).set_index("claim")
    chat = table.loc["Setting 2: chat: FusioN-data student beats the BoN-data student"]
    assert chat["found"].startswith("judge win rate; student-fusion − student-bon: +25.0")
    geo = table.loc["Setting 2: GeoFactX: FusioN-data student more accurate in most languages"]
    assert "significantly ahead in 4/5 languages (en, hi, ja, sw), behind in 0" in geo["found"]
    assert geo["verdict"] == "reproduced"
    language = table.loc["Setting 2: GeoFactX: FusioN-data student slightly worse on language correctness"]
    assert language["verdict"] == claims.NOT_MEASURABLE and "language correctness" in language["found"]
    order = table.loc["Setting 2: the teacher-pool table's order: BoN data above a single sample's"]
    assert order["found"].startswith("judge win rate; student-bon − student-single: +25.0")
    assert order["verdict"] == "reproduced"
    # no synthetic-data setting: one row says so
    alone = claims.claims_table(scores[:0] + scores, None, None, None, all_parsed(scores), SETTINGS)
    assert (alone[alone["claim"].str.startswith("Setting 2")]["verdict"] == claims.NOT_MEASURABLE).all()


def test_the_level_off_claim_reads_each_cell_up_to_its_own_largest_n(tmp_path):
    # a cell with a pool of 9 is tested; one whose N-scaling stops at 5 says so instead of failing
    settings = SETTINGS | {"tasks": {"mgsm": {"kind": "math"}}}
    tested = nscaling_frame(
        {("fusion-smol", 1): [20] * 12, ("fusion-smol", 7): [80] * 12, ("fusion-smol", 9): [80] * 12}
    )
    short = nscaling_frame({("fusion-smol", 1): [20] * 12, ("fusion-smol", 5): [80] * 12}).assign(lang="fr")
    fused = subset_fused([7], 12).assign(n=7, sampler="g")
    rows = claims.level_off_claim(pd.concat([tested, short]), settings, fused, "accuracy")
    assert len(rows) == 1 and "mgsm/de/g fusion-smol" in rows[0]["found"]
    (row,) = claims.level_off_claim(short, settings, fused, "accuracy")
    assert row["verdict"] == claims.NOT_MEASURABLE and "mgsm/fr/g fusion-smol ran N = 1, 5" in row["found"]


def test_nscaling_claims_without_n_two_or_fusion_records_still_give_every_row(tmp_path):
    settings = SETTINGS | {"tasks": {"mgsm": {"kind": "math"}}}
    points = nscaling_frame(
        {
            ("fusion-smol", 1): [0] * 12,
            ("bon-loglik", 1): [0] * 12,
            ("fusion-smol", 3): [100] * 12,
            ("bon-loglik", 6): [0] * 12,
        }
    )
    empty = analysis_report.fused_items([])
    rows = claims.nscaling_claims(points, settings, empty, {("mgsm", "de", "g"): 6})
    by_claim = {row["claim"].split(": ")[1][:12]: row for row in rows}
    assert by_claim["FusioN at N "]["found"] == "N-scaling did not run at N = 2"
    assert "FusioN at N = 3, BoN at N = 6" in by_claim["BoN at twice"]["found"]
    assert by_claim["FusioN's gai"]["verdict"] == claims.NOT_MEASURABLE


def test_measured_costs_stay_with_their_language_when_item_ids_repeat(tmp_path):
    # m-ArenaHard keeps one question id across languages: each language's fusion cost is its own
    pools, fusions = [], []
    for lang, tokens in (("de", 100), ("fr", 300)):
        pool = tmp_path / f"{lang}.jsonl"
        candidate = {"text": "x", "tokens_in": 1, "tokens_out": 1, "seconds": 0.0}
        cell = {"task": "arena", "lang": lang, "sampler": "g"}
        write_jsonl(pool, [{"id": "q1", **cell, "candidates": [candidate, candidate]}])
        fused = tmp_path / f"{lang}.fused.jsonl"
        cost = {"tokens_in": tokens, "tokens_out": 0, "seconds": 1.0}
        write_jsonl(fused, [{"id": "q1", **cell, "method": "fusion-smol", "cost": cost}])
        pools.append(str(pool))
        fusions.append(str(fused))
    costs = analysis_report.cost_points(pools, fusions, ["fusion-smol"], SETTINGS).set_index(["lang", "n"])
    assert costs.loc[("de", 2), "tokens"] == 4 + 100 and costs.loc[("fr", 2), "tokens"] == 4 + 300
