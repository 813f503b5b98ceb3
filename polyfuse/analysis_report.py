"""The paper's analyses as tables and figures, from files the study already wrote: no step here calls a model.

Every analysis reads the item scores (``scores/<sampler>/<method>.jsonl``) of the analysed cells on the task's
primary metric, and some read outputs and pools too:

- ``nscaling``: quality against N for each BoN scorer and each fusor. N = 1 is the single sample, N = the pool
  size is the study's own result, and every N between is the mean over seeded random subsets (derived pools
  ``<sampler>~n<size>s<index>``), averaged per item before the interval is taken.
- ``robustness``: quality as k candidates are replaced by garbage or by another item's (fluent, wrong) answer.
- ``position``: FusioN with the pool shown best-first, worst-first or at random, its quality, and which shown
  position the fused text takes most from (``analyses.copy_stats``).
- ``fusors``: the same pools fused by each model of ``analyses.fusors`` and BoN-selected with it as the scorer,
  smallest first, with the largest-minus-smallest trend of each (the paper: fusion rises with size, selection not).
- ``diagnostics``: the copy rate of each fused answer (the paper's closest-candidate ratio, and the share of its
  characters found in the candidates), and how often it beats the single sample, each BoN pick and the oracle,
  with the size of its losses.

Intervals are BCa bootstrap intervals over items (the resampling unit), as in the task tables; paired
differences carry a sign-flip permutation test over items.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse import analyses, methods
from polyfuse.figures import BON_COLOURS, FUSION_COLOURS, method_colours, pyplot
from polyfuse.figures import save_figure as save_figure_files
from polyfuse.io import read_jsonl, read_paired, write_text
from polyfuse.methods import method_rank
from polyfuse.registry import Registry
from polyfuse.statistics import alpha_of, bootstrap_ci, detectable_effect, paired_test
from polyfuse.tables import read_item_scores
from polyfuse.tasks import task_kind

CELL = ["task", "lang", "sampler"]

# Each analysis rule runs the function registered under its name, with its named inputs as keyword arguments.
ANALYSES: Registry[Callable[..., None]] = Registry("analysis")


def primary_scores(score_paths: list[str], tasks: dict) -> pd.DataFrame:
    """Item scores on each task's primary metric, with each row's base sampler and derived-pool variant."""
    items = read_item_scores(score_paths)
    primary = items["task"].map(lambda task: task_kind(tasks[task]["kind"]).metrics[0])
    items = items[items["metric"] == primary].copy()
    split = items["sampler"].map(methods.split_derived)
    items["base"] = split.map(lambda pair: pair[0])
    items["variant"] = split.map(lambda pair: pair[1] or "")  # "": the sampler's own pool
    items["family"] = items["variant"].map(family_of)
    return items


def interval_rows(points: pd.DataFrame, keys: list[str], settings: dict) -> pd.DataFrame:
    """Mean and BCa interval over items of ``value`` for each group of `keys`."""
    rows = []
    for key, group in points.groupby(keys, sort=False):
        values = group["value"].dropna().to_numpy()
        low, high = bootstrap_ci(
            [values], int(settings["bootstrap"]), float(settings["confidence"]), int(settings["seed"])
        )
        rows.append({**dict(zip(keys, key, strict=True)), "items": len(values), "mean": values.mean(), "ci_low": low})
        rows[-1]["ci_high"] = high
    return pd.DataFrame(rows)


def pool_sizes(pool_paths: list[str]) -> dict[tuple[str, str, str], int]:
    """Candidates per item of each (task, lang, sampler) pool, from its first record."""
    sizes = {}
    for path in pool_paths:
        first = next(read_jsonl(path), None)
        if first is not None:
            sizes[(first["task"], first["lang"], first["sampler"])] = len(first["candidates"])
    return sizes


def variant_field(variant: str, field: str):
    return methods.parse_variant(variant)[1].get(field) if variant else None


def family_of(variant: str | None) -> str:
    """The analysis a derived pool's variant serves (subset, injection, order); "" for a sampler's own pool."""
    return methods.parse_variant(variant)[0] if variant else ""


FUSED_KEY = ("task", "lang", "sampler", "method", "id")


def fused_items(fusion_paths: list[str]) -> pd.DataFrame:
    """Per fused item: whether the answer is the fusor's own (parsed, not a fallback), keyed like the item scores."""
    rows = [
        {key: record[key] for key in FUSED_KEY}
        | {"parsed": record.get("parse_status") == "ok" and not record.get("fallback")}
        for path in fusion_paths
        for record in read_jsonl(path)
        if methods.parse(record["method"])[0] == "fusion"
    ]
    fused = pd.DataFrame(rows, columns=[*FUSED_KEY, "parsed"])
    split = fused["sampler"].map(methods.split_derived)
    return fused.assign(base=split.map(lambda pair: pair[0]), variant=split.map(lambda pair: pair[1] or ""))


def parse_share(fused: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The share of fused answers that are the fusor's own, per group of `keys`: shown beside the quality."""
    return fused.groupby(keys, as_index=False)["parsed"].mean().rename(columns={"parsed": "parsed_share"})


def nscaling_parse(fusion_paths: list[str], sizes: dict) -> pd.DataFrame:
    """Per (cell, method, N): the parse share of the fusions of the subsets of size N (the pool's at its size)."""
    return parse_share(nscaling_fusions(fused_items(fusion_paths), sizes), [*CELL, "method", "n"])


def nscaling_fusions(fused: pd.DataFrame, sizes: dict) -> pd.DataFrame:
    """The fused items of the N-scaling under their base sampler, with their N: a subset's size, or the pool's."""
    fused = fused[fused["variant"].map(family_of).isin(["", "subset"])]
    return fused.assign(
        n=[
            variant_field(variant, "size") if variant else sizes[(task, lang, sampler)]
            for task, lang, sampler, variant in fused[["task", "lang", "sampler", "variant"]].itertuples(index=False)
        ],
        sampler=fused["base"],
    )


def nscaling_points(items: pd.DataFrame, sizes: dict) -> pd.DataFrame:
    """Per (cell, method, N, item): the single sample at N = 1, subsets' mean at each N between, the pool at the top."""
    rows = items[items["family"].isin(["", "subset"])].copy()
    rows["n"] = [
        variant_field(variant, "size") if variant else sizes[(task, lang, sampler)]
        for task, lang, sampler, variant in rows[["task", "lang", "sampler", "variant"]].itertuples(index=False)
    ]
    rows["sampler"] = rows["base"]
    compared = rows[rows["method"].map(lambda m: methods.parse(m)[0] in ("bon", "fusion"))]
    single = rows[rows["method"] == "single"].drop(columns=["method", "n"])
    # N = 1 is the single sample, the same point on the curve of every method its own cell ran.
    ones = compared[[*CELL, "method"]].drop_duplicates().merge(single, on=CELL).assign(n=1)
    points = pd.concat([compared, ones], ignore_index=True)
    return points.groupby(["task", "lang", "sampler", "method", "n", "id"], as_index=False)["value"].mean()


def at_injection_k(injected: pd.DataFrame, clean: pd.DataFrame) -> pd.DataFrame:
    """The injected pools' rows under their base sampler with their kind and k, and the unchanged pool's rows at
    k = 0 under every kind: the rows of the robustness curves (item scores or fused answers alike)."""
    injected = injected.assign(
        kind=injected["variant"].map(lambda v: variant_field(v, "kind")),
        k=injected["variant"].map(lambda v: variant_field(v, "k")),
        sampler=injected["base"],
    )
    kinds = sorted(injected["kind"].unique())
    return pd.concat([injected, *(clean.assign(kind=kind, k=0) for kind in kinds)], ignore_index=True)


def injection_points(items: pd.DataFrame) -> pd.DataFrame:
    """Per (cell, kind, method, k, item): the unchanged pool at k = 0 for every kind, then each injected pool."""
    clean = items[(items["family"] == "") & items["method"].map(lambda m: methods.parse(m)[0] in ("bon", "fusion"))]
    points = at_injection_k(items[items["family"] == "injection"], clean)
    return points[["task", "lang", "sampler", "kind", "method", "k", "id", "value"]]


def curve_figure(
    table: pd.DataFrame, panels: list[str], x: str, xlabel: str, settings: dict, path: Path, discrete: bool = True
) -> None:
    """One panel per group of `panels`, one line with its interval band per method, in the study's colours."""
    plt = pyplot()
    groups = list(table.groupby(panels, sort=False))
    columns = min(3, len(groups))
    rows = -(-len(groups) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    colours = method_colours(settings["methods"])
    for ax, (key, group) in zip(axes.flat, groups, strict=False):
        for method, line in sorted(group.groupby("method"), key=lambda pair: method_rank(pair[0])):
            line = line.sort_values(x)
            ax.plot(line[x], line["mean"], marker="o", color=colours[method], label=method)
            ax.fill_between(line[x], line["ci_low"], line["ci_high"], color=colours[method], alpha=0.15)
        metric = settings["metrics"][group["task"].iloc[0]]
        ax.set_title(" · ".join(map(str, key)), fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{metric} (mean, {float(settings['confidence']):.0%} CI)")
        if discrete:  # a tick per N or k; a continuous axis (tokens) keeps matplotlib's own
            ax.set_xticks(sorted(group[x].unique()))
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=7)
    for ax in axes.flat[len(groups) :]:
        ax.set_visible(False)
    fig.tight_layout()
    save_figure_files(fig, path, also=("pdf",))
    plt.close(fig)


def write_table(table: pd.DataFrame, outputs: dict, title: str, note: str) -> None:
    write_text(outputs["table"], table.to_csv(index=False, float_format="%.4g"))
    shown = table.copy()
    for column in shown.select_dtypes("float").columns:
        shown[column] = shown[column].map(lambda value: "" if pd.isna(value) else f"{value:.2f}")
    write_text(outputs["markdown"], f"# {title}\n\n{note}\n\n{shown.to_markdown(index=False)}\n")


def nscaling_quality(scores: list[str], pools: list[str], fusions: list[str], settings: dict):
    """The N-scaling's item points, and per (cell, method, N) their mean and interval beside FusioN's parse share."""
    sizes = pool_sizes(pools)
    points = nscaling_points(primary_scores(scores, settings["tasks"]), sizes)
    quality = interval_rows(points, ["task", "lang", "sampler", "method", "n"], settings)
    return points, quality.merge(nscaling_parse(fusions, sizes), on=[*CELL, "method", "n"], how="left")


@ANALYSES.register("nscaling")
def run_nscaling(scores: list[str], pools: list[str], fusions: list[str], *, outputs: dict, settings: dict) -> None:
    _, table = nscaling_quality(scores, pools, fusions, settings)
    table = table.sort_values(["task", "lang", "sampler", "method", "n"], key=sort_key)
    write_table(
        table,
        outputs,
        "N-scaling",
        f"Quality against N; each N between 1 and the pool is the item mean over {settings['subsets']} seeded "
        "random subsets, then the mean and BCa interval over items. N = 1 is the single sample. `parsed_share`: the "
        "share of FusioN's answers at that N that are the fusor's own (the rest are fallbacks).",
    )
    curve_figure(table, CELL, "n", "N (candidates per prompt)", settings, Path(outputs["figure"]))


def cost_points(pool_paths: list[str], fusion_paths: list[str], compared: list[str], settings: dict) -> pd.DataFrame:
    """Per (cell, method, N, item): model tokens (in + out), model calls and seconds, as the engines recorded them.

    Sampling costs are each candidate's own record (the cache keeps them, so a cached candidate still counts). A
    method adds what its own record says it cost: a fused answer its fusor call, a selection its scorer's calls,
    the tokens the scorer read and its seconds, all measured when they ran (a model-free scorer such as MBR makes no
    call and reads no model token, but its seconds count). A selection whose cost was not measured (a score cached
    before costs were kept) has no cost here, never 0.
    """
    spent = {}
    for path in fusion_paths:
        for record in read_jsonl(path):
            key = (record["task"], record["lang"], record["sampler"], record["method"], record["id"])
            spent[key] = record.get("cost")  # ids repeat across languages (m-ArenaHard's question ids)
    rows = []
    for path in pool_paths:
        for pool in read_jsonl(path):
            base, variant = methods.split_derived(pool["sampler"])
            candidates = pool["candidates"]
            n = variant_field(variant, "size") if variant else len(candidates)
            cell = {"task": pool["task"], "lang": pool["lang"], "sampler": base, "id": pool["id"]}
            tokens = sum(c["tokens_in"] + c["tokens_out"] for c in candidates)
            seconds = sum(c["seconds"] for c in candidates)
            if not variant:  # N = 1, the single sample, shared by every method's curve
                first = candidates[0]
                for method in compared:
                    rows.append(
                        {
                            **cell,
                            "method": method,
                            "n": 1,
                            "tokens": first["tokens_in"] + first["tokens_out"],
                            "calls": 1,
                            "seconds": first["seconds"],
                        }
                    )
            for method in compared:
                key = (pool["task"], pool["lang"], pool["sampler"], method, pool["id"])
                if key not in spent:
                    continue
                cost = spent[key]
                if cost is None:
                    extra = (np.nan, np.nan, np.nan)
                else:  # a fused answer recorded before its cost kept its one call has none
                    extra = (cost["tokens_in"] + cost["tokens_out"], cost.get("calls", 1), cost["seconds"])
                rows.append(
                    {
                        **cell,
                        "method": method,
                        "n": n,
                        "tokens": tokens + extra[0],
                        "calls": len(candidates) + extra[1],
                        "seconds": seconds + extra[2],
                    }
                )
    frame = pd.DataFrame(rows, columns=[*CELL, "id", "method", "n", "tokens", "calls", "seconds"])
    return frame.groupby([*CELL, "method", "n", "id"], as_index=False)[["tokens", "calls", "seconds"]].mean()


@ANALYSES.register("compute")
def run_compute(scores: list[str], pools: list[str], fusions: list[str], *, outputs: dict, settings: dict) -> None:
    """Quality against the model tokens spent per item, for BoN and FusioN at every N of the N-scaling."""
    points, quality = nscaling_quality(scores, pools, fusions, settings)
    costs = cost_points(pools, fusions, sorted(points["method"].unique()), settings)
    spent = costs.groupby(["task", "lang", "sampler", "method", "n"], as_index=False)[["tokens", "calls", "seconds"]]
    table = quality.merge(spent.mean(), on=["task", "lang", "sampler", "method", "n"], how="left")
    table = table.sort_values(["task", "lang", "sampler", "method", "n"], key=sort_key)
    write_table(
        table,
        outputs,
        "Compute-matched comparison",
        "Model tokens (in + out), model calls and seconds per item, spent by each method at each N: the candidates'"
        " sampling, then the fusor's call or the BoN scorer's calls, the tokens it read and its seconds, as measured"
        " when they ran (MBR calls no model; its seconds count). Beside it, the quality (mean and BCa interval over"
        " items) and, for FusioN, the share of its answers that are the fusor's own (`parsed_share`).",
    )
    figure = Path(outputs["figure"])
    curve_figure(table, CELL, "tokens", "model tokens per item (in + out)", settings, figure, discrete=False)


@ANALYSES.register("robustness")
def run_robustness(scores: list[str], fusions: list[str], *, outputs: dict, settings: dict) -> None:
    points = injection_points(primary_scores(scores, settings["tasks"]))
    table = interval_rows(points, ["task", "lang", "sampler", "kind", "method", "k"], settings)
    fused = fused_items(fusions)
    fused = at_injection_k(fused[fused["variant"].map(family_of) == "injection"], fused[fused["variant"] == ""])
    table = table.merge(
        parse_share(fused, [*CELL, "kind", "method", "k"]), on=[*CELL, "kind", "method", "k"], how="left"
    )
    table = table.sort_values(["task", "lang", "sampler", "kind", "method", "k"], key=sort_key)
    write_table(
        table,
        outputs,
        "Robustness to injected candidates",
        "Quality as k candidates of each pool are replaced, at seeded positions, by random words (garbage) or by "
        "distinct other items' candidates (fluent, wrong); k = 0 is the pool as sampled. `parsed_share`: the share "
        "of FusioN's answers that are the fusor's own; a fallback is the pool's first original candidate, never an "
        "injected one.",
    )
    curve_figure(table, [*CELL, "kind"], "k", "k (candidates replaced)", settings, Path(outputs["figure"]))


def sort_key(column: pd.Series) -> pd.Series:
    return column.map(method_rank) if column.name == "method" else column


def fused_records(output_paths: list[str], pool_paths: list[str]) -> pd.DataFrame:
    """Per fused item: its copy measures and the shown position (1-based) of the candidate it takes most from."""
    pools = {
        (first["task"], first["lang"], first["sampler"]): path
        for path in pool_paths
        for first in [next(read_jsonl(path), None)]
        if first is not None
    }
    rows = []
    for path in output_paths:
        first = next(read_jsonl(path), None)
        if first is None or methods.parse(first["method"])[0] != "fusion":
            continue
        pool_path = pools[(first["task"], first["lang"], first["sampler"])]
        for pool, record in read_paired(pool_path, path):
            texts = [candidate["text"].strip() for candidate in pool["candidates"]]
            stats = analyses.copy_stats(record["output"], texts)
            shown = tuple(record["order"].index(source) + 1 for source in stats.sources)
            rows.append(
                {
                    "task": record["task"],
                    "lang": record["lang"],
                    "sampler": record["sampler"],
                    "method": record["method"],
                    "id": record["id"],
                    "parsed": record.get("parse_status") == "ok" and not record.get("fallback"),
                    "ratio": stats.ratio,
                    "coverage": stats.coverage,
                    "copied_whole": stats.copied_whole,
                    "source_positions": shown,
                    "candidates": len(record["order"]),
                }
            )
    return pd.DataFrame(rows)


def credit(positions: tuple[int, ...], position: int) -> float:
    """The share of a fused answer's credit that goes to the shown `position`, split among tied `positions`."""
    return positions.count(position) / len(positions) if positions else 0.0


@ANALYSES.register("position")
def run_position(scores: list[str], fusions: list[str], pools: list[str], *, outputs: dict, settings: dict) -> None:
    """Per order shown: FusioN's quality, and the share of fused answers taking most from each shown position."""
    items = primary_scores(scores, settings["tasks"])
    shown = items[items["family"] == "order"].assign(
        order=lambda frame: frame["variant"].map(lambda v: variant_field(v, "how"))
    )
    table = interval_rows(shown.assign(sampler=shown["base"]), [*CELL, "order", "method"], settings)
    fused = fused_records(fusions, pools)
    fused = fused[fused["sampler"].map(lambda name: family_of(methods.split_derived(name)[1]) == "order")]
    fused = fused.assign(
        order=fused["sampler"].map(lambda name: variant_field(methods.split_derived(name)[1], "how")),
        sampler=fused["sampler"].map(lambda name: methods.split_derived(name)[0]),
    )
    keys = [*CELL, "order", "method"]
    columns = [f"from_{p}" for p in range(1, int(fused["candidates"].max()) + 1)] if len(fused) else []
    rows = []
    for key, group in fused.groupby(keys, sort=False):
        parsed = group[group["parsed"]]  # a fallback is not the fusor's text: it says nothing of where it took it
        # Candidates tied for the most copied characters (identical ones always are) share the credit equally.
        shares = {
            c: float(parsed["source_positions"].map(lambda shown, p=int(c[5:]): credit(shown, p)).mean())
            if len(parsed)
            else np.nan
            for c in columns
        }
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "parsed": len(parsed),
                "parsed_share": len(parsed) / len(group),
                **shares,
            }
        )
    shares = pd.DataFrame(rows, columns=[*keys, "parsed", "parsed_share", *columns])
    table = table.merge(shares, on=[*CELL, "order", "method"], how="left")
    write_table(
        table,
        outputs,
        "Position bias",
        "FusioN shown the whole pool best-first or worst-first (by the task metric against the reference) or in a "
        "seeded random order. `from_p` is the share of the `parsed` fused answers whose text comes most from the "
        "candidate shown at position p (character-level matching blocks of 4+ characters); an answer that takes as "
        "much from several candidates (identical candidates always tie) splits its credit equally among their "
        "positions, so duplicates do not favour the first one shown; a fallback is no answer.",
    )
    position_figure(table, columns, settings, Path(outputs["figure"]))


def position_figure(table: pd.DataFrame, columns: list[str], settings: dict, path: Path) -> None:
    plt = pyplot()
    groups = list(table.groupby([*CELL, "method"], sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.4), squeeze=False)
    for ax, (key, group) in zip(axes.flat, groups, strict=True):
        width = 0.8 / max(1, len(group))
        for offset, row in enumerate(group.itertuples(index=False)):
            xs = np.arange(len(columns)) + (offset - (len(group) - 1) / 2) * width
            shares = [100 * getattr(row, column) for column in columns]
            ax.bar(xs, shares, width, label=f"{row.order} ({row.mean:.1f})", edgecolor="#333333", linewidth=0.5)
        ax.set_xticks(np.arange(len(columns)), [column.split("_")[1] for column in columns])
        ax.set_xlabel("shown position of the candidate the fused text takes most from")
        ax.set_ylabel("share of fused answers (%)")
        ax.set_title(" · ".join(map(str, key)), fontsize=9)
        ax.legend(fontsize=7, title=f"order (mean {settings['metrics'][key[0]]})", title_fontsize=7)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    save_figure_files(fig, path, also=("pdf",))
    plt.close(fig)


@ANALYSES.register("diagnostics")
def run_diagnostics(scores: list[str], fusions: list[str], pools: list[str], *, outputs: dict, settings: dict) -> None:
    """Each fusor's copy rate, and its per-item wins, ties and losses against every other method of the cell."""
    items = primary_scores(scores, settings["tasks"])
    by_item = items.pivot_table(index=[*CELL, "id"], columns="method", values="value", aggfunc="first")
    fused = fused_records(fusions, pools)
    resamples, seed = int(settings["bootstrap"]), int(settings["seed"])
    rows = []
    for (task, lang, sampler, fusion), answers in fused.groupby([*CELL, "method"], sort=False):
        cell = by_item.loc[(task, lang, sampler)]
        copied = answers[answers["parsed"]]  # a fallback is not the fusor's text, so it says nothing of copying
        ratio_low, ratio_high = (
            bootstrap_ci([copied["ratio"].to_numpy()], resamples, float(settings["confidence"]), seed)
            if len(copied)
            else (float("nan"), float("nan"))
        )
        # A fallback is another method's answer under FusioN's name (with `first`, a forced tie with the single
        # sample): FusioN's own record against each method is on the items whose fusion parsed; fallbacks are counted.
        own = cell.index.isin(set(answers.loc[answers["parsed"], "id"]))
        fallbacks = int((~answers["parsed"]).sum())
        for versus in sorted((m for m in cell.columns if m != fusion and cell[m].notna().any()), key=method_rank):
            both = cell.loc[own, [fusion, versus]].dropna()
            outcome = analyses.outcomes(both[fusion].tolist(), both[versus].tolist())
            difference, p = paired_test(both[fusion], both[versus], resamples, seed)
            rows.append(
                {
                    "task": task,
                    "lang": lang,
                    "sampler": sampler,
                    "method": fusion,
                    "versus": versus,
                    **{key: outcome[key] for key in ("items", "wins", "ties", "losses")},
                    "fallbacks": fallbacks,
                    "mean_delta": difference,
                    "p": p,
                    "detectable": detectable_effect(both[fusion] - both[versus], alpha_of(settings)),
                    **{f"loss_{q}": outcome["loss_quantiles"][q] for q in ("p50", "p90", "max")},
                    "copy_ratio": copied["ratio"].mean() if len(copied) else float("nan"),
                    "copy_ratio_low": ratio_low,
                    "copy_ratio_high": ratio_high,
                    "coverage": copied["coverage"].mean(),
                    "copied_whole": copied["copied_whole"].mean(),
                    "parsed": answers["parsed"].mean(),
                    "parsed_items": len(copied),
                }
            )
    table = pd.DataFrame(rows)
    write_table(
        table,
        outputs,
        "Fusion diagnostics",
        "Per fusor and cell: the copy rate (`copy_ratio`, the paper's closest-candidate difflib ratio; `coverage`, "
        "the share of fused characters found in some candidate), the share copied whole and parsed, and FusioN "
        "against each other method item by item, on the items whose fusion parsed (`items`; the `fallbacks` are "
        "another method's answer under FusioN's name, so they are left out and counted): wins, ties, losses, the "
        "mean paired difference with its sign-flip p and the smallest difference that test detects with 80% power "
        "(`detectable`), and the size of the losses (median, 90th percentile, largest).",
    )
    diagnostics_figure(fused, by_item, settings, Path(outputs["figure"]))


def diagnostics_figure(fused: pd.DataFrame, by_item: pd.DataFrame, settings: dict, path: Path) -> None:
    """Left: the copy rate's distribution per cell. Right: FusioN minus each other method, item by item."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    cells = list(fused.groupby([*CELL, "method"], sort=False))
    parsed = [100 * group.loc[group["parsed"], "ratio"] for _, group in cells]
    left.boxplot(
        parsed, tick_labels=[f"{' · '.join(key)}\nn={len(p)}" for (key, _), p in zip(cells, parsed, strict=True)]
    )
    left.set_ylabel("copy rate of parsed answers:\nclosest-candidate ratio (%)")
    left.set_ylim(0, 105)
    left.tick_params(axis="x", labelrotation=30, labelsize=7)
    deltas, labels = [], []
    for (task, lang, sampler, fusion), answers in cells:
        cell = by_item.loc[(task, lang, sampler)]
        own = cell.index.isin(set(answers.loc[answers["parsed"], "id"]))  # as in the table: fallbacks left out
        for versus in sorted((m for m in cell.columns if m != fusion and cell[m].notna().any()), key=method_rank):
            both = cell.loc[own, [fusion, versus]].dropna()
            deltas.append(both[fusion] - both[versus])
            labels.append(f"{lang} {sampler}\nvs {versus}")
    right.boxplot(deltas, tick_labels=labels)
    right.axhline(0, color="#555555", linewidth=0.8, linestyle="--")
    right.set_ylabel("FusioN − other method, per item (metric points)")
    right.tick_params(axis="x", labelrotation=30, labelsize=7)
    for ax in (left, right):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    save_figure_files(fig, path, also=("pdf",))
    plt.close(fig)


FUSOR_ROLES = ("fusor", "BoN scorer")


def fusor_choice_roles(choice: dict) -> dict[str, tuple[str, int, str]]:
    """method -> (role, the model's place in the list, smallest first, model) for each listed model's two methods."""
    roles = {}
    for position, model in enumerate(choice["models"]):
        roles[methods.fusion(model)] = ("fusor", position, model)
        roles[methods.bon(methods.scored_by(choice["scorer"], model))] = ("BoN scorer", position, model)
    return roles


@ANALYSES.register("fusors")
def run_fusors(scores: list[str], fusions: list[str], *, outputs: dict, settings: dict) -> None:
    """Each listed model as the fusor and as the BoN scorer of the same pools, and the trend from smallest up."""
    roles = fusor_choice_roles(settings["fusors"])
    items = primary_scores(scores, settings["tasks"])
    items = items[(items["family"] == "") & items["method"].isin(roles)]
    items = items.assign(
        **{
            column: items["method"].map(lambda m, i=i: roles[m][i])
            for i, column in enumerate(("role", "position", "model"))
        }
    )
    keys = [*CELL, "role", "position", "model", "method"]
    table = interval_rows(items, keys, settings)
    shares = parse_share(fused_items(fusions), [*CELL, "method"]).rename(columns={"parsed_share": "parsed"})
    table = table.merge(shares, how="left")
    # The trend: the largest listed model against the smallest, paired over the items both scored.
    largest = len(settings["fusors"]["models"]) - 1
    by_item = items.pivot_table(index=[*CELL, "role", "id"], columns="position", values="value", aggfunc="first")
    trend = []
    if {0, largest} <= set(by_item.columns):
        for key, frame in by_item.groupby(level=[0, 1, 2, 3]):
            both = frame[[0, largest]].dropna()
            gain, p = paired_test(both[largest], both[0], int(settings["bootstrap"]), int(settings["seed"]))
            least = detectable_effect(both[largest] - both[0], alpha_of(settings))
            trend.append(
                {**dict(zip([*CELL, "role"], key, strict=True)), "position": largest, "gain": gain, "p": p}
                | {"gain_detectable": least}
            )
    trend_columns = [*CELL, "role", "position", "gain", "p", "gain_detectable"]
    table = table.merge(pd.DataFrame(trend, columns=trend_columns), how="left")
    table = table.merge(size_interaction(by_item, largest, settings), how="left")
    table = table.sort_values([*CELL, "role", "position"])
    write_table(
        table,
        outputs,
        "Fusor choice and size",
        "The same pools fused by each listed model (smallest first) and BoN-selected with the same model as the "
        f"scorer ({settings['fusors']['scorer']}); mean and BCa interval over items. `gain` is the largest model "
        "minus the smallest, paired over items, with its sign-flip `p` and the smallest gain that test detects "
        "with 80% power (`gain_detectable`); `interaction` (on the largest fusor's row) is "
        "the fusor's gain minus the BoN scorer's gain item by item, (fusion_large − fusion_small) − (bon_large − "
        "bon_small), over the `interaction_n` items all four scored, with its sign-flip `interaction_p` "
        "and `interaction_detectable`; `parsed` is "
        "the share of fused answers that were the fusor's own.",
    )
    fusors_figure(table, settings, Path(outputs["figure"]))


def size_interaction(by_item: pd.DataFrame, largest: int, settings: dict) -> pd.DataFrame:
    """Per cell, on the largest fusor's row: whether fusion gains more from the larger model than BoN does, tested
    item by item, (fusion_large − fusion_small) − (bon_large − bon_small) against 0."""
    rows = []
    if {0, largest} <= set(by_item.columns):
        gains = (by_item[largest] - by_item[0]).unstack("role")
        for key, frame in gains.groupby(level=[0, 1, 2]):
            if not set(FUSOR_ROLES) <= set(frame.columns):
                continue
            both = frame[list(FUSOR_ROLES)].dropna()
            difference = both[FUSOR_ROLES[0]] - both[FUSOR_ROLES[1]]
            interaction, p = paired_test(
                difference, np.zeros(len(difference)), int(settings["bootstrap"]), int(settings["seed"])
            )
            rows.append(
                {**dict(zip(CELL, key, strict=True)), "role": FUSOR_ROLES[0], "position": largest}
                | {"interaction": interaction, "interaction_p": p, "interaction_n": len(both)}
                | {"interaction_detectable": detectable_effect(difference, alpha_of(settings))}
            )
    columns = ["interaction", "interaction_p", "interaction_n", "interaction_detectable"]
    return pd.DataFrame(rows, columns=[*CELL, "role", "position", *columns])


def fusors_figure(table: pd.DataFrame, settings: dict, path: Path) -> None:
    plt = pyplot()
    groups = list(table.groupby(CELL, sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.4), squeeze=False)
    models = settings["fusors"]["models"]
    colours = dict(zip(FUSOR_ROLES, (FUSION_COLOURS[0], BON_COLOURS[0]), strict=True))
    for ax, (key, group) in zip(axes.flat, groups, strict=True):
        for role, line in group.groupby("role", sort=False):
            line = line.sort_values("position")
            ax.plot(line["position"], line["mean"], marker="o", color=colours[role], label=f"as {role}")
            ax.fill_between(line["position"], line["ci_low"], line["ci_high"], color=colours[role], alpha=0.15)
            if role == "fusor":  # a fusor whose answers did not parse is plotted at its fallback's quality: say so
                for row in line.itertuples(index=False):
                    ax.annotate(
                        f"{row.parsed:.0%} parsed",
                        (row.position, row.mean),
                        textcoords="offset points",
                        xytext=(6, -10),
                        fontsize=7,
                        color=colours[role],
                    )
        ax.set_xticks(range(len(models)), models, rotation=20, fontsize=8)
        ax.set_xlabel("model, smallest first")
        ax.set_ylabel(f"{settings['metrics'][key[0]]} (mean, {float(settings['confidence']):.0%} CI)")
        ax.set_title(" · ".join(map(str, key)), fontsize=9)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure_files(fig, path, also=("pdf",))
    plt.close(fig)
