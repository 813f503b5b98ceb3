"""Command line for the rules that run in the torch environment (COMET, reward models).

Those rules run under another interpreter than Snakemake's (envs/comet.yaml; on the pip
route `.venv-comet`), so they call ``python -m polyfuse.cli <step> ...`` from a shell
directive instead of a script directive.
"""

from __future__ import annotations

import argparse
import json

from polyfuse.steps import run_logged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m polyfuse.cli")
    parser.add_argument("step", choices=["comet", "comet-oracle", "select-rm"])
    parser.add_argument("--items", required=True)
    parser.add_argument(
        "--inputs", required=True, nargs="+", help="outputs (comet) or a pool (comet-oracle, select-rm)"
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--summary", help="comet: corpus-level summary JSON")
    parser.add_argument("--kind", help="select-rm: the task kind")
    parser.add_argument("--settings", required=True, help="JSON: the comet or reward_model config section")
    parser.add_argument("--log")
    args = parser.parse_args(argv)
    settings = json.loads(args.settings)
    run_logged(args.step, args.log, lambda: STEPS[args.step](args, settings))


def _comet(args, settings) -> None:
    from polyfuse.comet_score import run_comet

    run_comet(args.items, args.inputs, args.out, args.summary, settings)


def _comet_oracle(args, settings) -> None:
    from polyfuse.comet_score import run_comet_oracle

    run_comet_oracle(args.items, args.inputs[0], args.out, settings)


def _select_rm(args, settings) -> None:
    from polyfuse.reward import RewardModel
    from polyfuse.select import make_scorer, run_select
    from polyfuse.tasks import task_kind

    reward_model = RewardModel(
        settings["model"],
        settings["device"],
        int(settings["batch_size"]),
        int(settings["max_length"]),
        settings.get("dtype"),
    )
    run_select(
        args.items,
        args.inputs[0],
        args.out,
        make_scorer("reward_model", task_kind(args.kind), reward_model=reward_model),
    )


STEPS = {"comet": _comet, "comet-oracle": _comet_oracle, "select-rm": _select_rm}

if __name__ == "__main__":
    main()
