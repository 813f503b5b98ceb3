"""The per-task figures: one panel per sampler, a bar per method and language with its interval, in one
colour per method family (single and oracle grey and green, BoN blues, FusioN oranges)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from polyfuse import methods
from polyfuse.io import atomic_path
from polyfuse.methods import method_rank

METHOD_COLOURS = {"single": "#9e9e9e", "oracle": "#c7e9c0"}


BON_COLOURS = ["#4c72b0", "#64b5cd", "#8172b2", "#55a868"]


FUSION_COLOURS = ["#dd8452", "#c44e52", "#937860"]


def method_colours(every: list[str]) -> dict[str, str]:
    """One colour per method of the whole study (`every`, in a fixed order), so a method looks alike in every figure."""
    colours, bon, fusion = {}, iter(BON_COLOURS), iter(FUSION_COLOURS)
    for method in every:
        if method in METHOD_COLOURS:
            colours[method] = METHOD_COLOURS[method]
        elif methods.parse(method)[0] == "bon":
            colours[method] = next(bon, "#4c72b0")
        else:
            colours[method] = next(fusion, "#dd8452")
    return colours


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend: report jobs have no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_bars(ax, xs, means, low, high, width: float, colour: str, label: str, hatch: str | None = None) -> None:
    """One series of bars with interval whiskers (where a cell has an interval) and value labels."""
    bars = ax.bar(xs, means, width, color=colour, edgecolor="#333333", linewidth=0.5, label=label, hatch=hatch)
    has_ci = np.isfinite(low)  # a cell of one item has no interval
    ax.errorbar(
        xs[has_ci],
        np.asarray(means)[has_ci],
        yerr=[np.subtract(means, low)[has_ci], np.subtract(high, means)[has_ci]],
        fmt="none",
        ecolor="#333333",
        elinewidth=0.8,
        capsize=2.5,
    )
    ax.bar_label(bars, labels=[f"{m:.0f}" if np.isfinite(m) else "" for m in means], fontsize=7, padding=2)


def style_axis(ax, groups: list[str], n_langs: int, metric: str, confidence: float, highs: np.ndarray) -> None:
    """Group ticks, the language/average divider, the metric's y range and, for win rates, the parity line."""
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel(f"{metric} (mean, {confidence:.0%} CI)")
    ax.axvline(n_langs - 0.5, color="#bbbbbb", linewidth=0.8, linestyle=":")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    top = np.nanmax(highs) if np.isfinite(highs).any() else 1.0
    ax.set_ylim(0, 108 if metric == "winrate" else max(1.0, top * 1.15))  # room for the label of a bar at 100
    if metric == "winrate":
        ax.axhline(50, color="#555555", linewidth=0.8, linestyle="--")  # parity with the reference system


def save_figure(fig, path: Path, also: tuple[str, ...] = ()) -> None:
    """The figure at ``path`` (format from its suffix) and, for each format in ``also``, beside it."""
    for target in (path, *(path.with_suffix(f".{fmt}") for fmt in also)):
        with atomic_path(target) as tmp:
            # tight: a long axis label or rotated tick labels are kept whole, not cut at the canvas edge
            fig.savefig(tmp, format=target.suffix.lstrip("."), dpi=150, bbox_inches="tight")


def plot_task(
    frame: pd.DataFrame,
    averages: dict[str, pd.DataFrame],
    task: str,
    metric: str,
    confidence: float,
    path: Path,
    colours: dict[str, str],
) -> None:
    """Grouped bars per language and the common-item average, one panel per sampler, one bar per method."""
    plt = pyplot()
    samplers = sorted(frame["sampler"].unique())
    shown = sorted(frame["method"].unique(), key=method_rank)
    langs = sorted(frame["lang"].unique())
    groups = langs + ["avg"]
    figsize = (max(6.0, 1.3 * len(groups) * len(shown) / 3 + 2), 4.2 * len(samplers))
    fig, axes = plt.subplots(len(samplers), 1, figsize=figsize, squeeze=False)
    width = 0.8 / len(shown)
    for ax, sampler in zip(axes[:, 0], samplers, strict=True):
        cells = frame[frame["sampler"] == sampler]
        for offset, method in enumerate(shown):
            rows = cells[cells["method"] == method].set_index("lang")
            average = averages[sampler].reindex([method])
            means = [rows["mean"].get(lang, np.nan) for lang in langs] + [average["mean"].iloc[0]]
            low = [rows["ci_low"].get(lang, np.nan) for lang in langs] + [average["ci_low"].iloc[0]]
            high = [rows["ci_high"].get(lang, np.nan) for lang in langs] + [average["ci_high"].iloc[0]]
            xs = np.arange(len(groups)) + (offset - (len(shown) - 1) / 2) * width
            hatch = "//" if method == "oracle" else None
            draw_bars(ax, xs, means, low, high, width * 0.92, colours[method], method, hatch)
        n_items = int(cells["n"].max()) if not cells.empty else 0
        ax.set_title(f"{task} · sampler {sampler} · {n_items} items per language", fontsize=10, loc="left")
        highs = np.concatenate(
            [cells["ci_high"].to_numpy(dtype=float), averages[sampler]["ci_high"].to_numpy(dtype=float)]
        )
        style_axis(ax, groups, len(langs), metric, confidence, highs)
    axes[0, 0].legend(ncol=min(len(shown), 5), fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.08))
    fig.suptitle(f"Fusion-of-N vs Best-of-N: {task} ({metric})", fontsize=12, x=0.01, ha="left")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
