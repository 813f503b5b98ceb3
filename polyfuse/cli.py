"""Command line for the rules that run in an environment of their own: the torch group (COMET, reward models;
envs/comet.yaml, `.venv-comet`) and student fine-tuning (envs/train.yaml, `.venv-train`).

Those rules run under another interpreter than Snakemake's, so they call ``python -m polyfuse.cli <step> ...``
from a shell directive instead of a script directive. Each step has its own flags.
"""

from __future__ import annotations

import argparse
import json

from polyfuse.registry import Registry
from polyfuse.steps import run_logged

STEPS: Registry = Registry("step")  # each step below: its name on the command line -> what it runs


def main(argv: list[str] | None = None) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", required=True)
    common.add_argument("--log")
    scoring = argparse.ArgumentParser(add_help=False, parents=[common])
    scoring.add_argument("--items", required=True)
    scoring.add_argument(
        "--inputs",
        required=True,
        nargs="+",
        help="outputs (comet), a pool (comet-oracle, mbr-comet, select-rm), or a pool and a method's outputs "
        "(target-scores-rm)",
    )
    scoring.add_argument("--summary", help="comet: corpus-level summary JSON")
    scoring.add_argument("--kind", help="select-rm, target-scores-rm: the task kind")
    scoring.add_argument("--settings", required=True, help="JSON: the comet or reward_model config section")
    training = argparse.ArgumentParser(add_help=False, parents=[common])
    training.add_argument("--settings", required=True, help="JSON: the distill.finetune config section")
    training.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's, one per core)")
    training.add_argument("--cache", help="the student cache: trained students and dequantized bases, by content")

    parser = argparse.ArgumentParser(prog="python -m polyfuse.cli")
    steps = parser.add_subparsers(dest="step", required=True)
    for name in ("comet", "comet-oracle", "mbr-comet", "select-rm", "target-scores-rm"):
        steps.add_parser(name, parents=[scoring])
    finetune = steps.add_parser("finetune", parents=[training], help="fine-tune a student on a distill set")
    finetune.add_argument("--inputs", required=True, nargs="+", help="the set's sft.jsonl files")
    finetune.add_argument("--set", required=True, dest="set_name", help="the distill set's name")
    steps.add_parser("export-base", parents=[training], help="export the untrained base as the base student")
    args = parser.parse_args(argv)
    settings = json.loads(args.settings)
    run_logged(args.step, args.log, lambda: STEPS[args.step](args, settings))


@STEPS.register("comet")
def _comet(args, settings) -> None:
    from polyfuse.comet_score import run_comet

    run_comet(args.items, args.inputs, args.out, args.summary, settings=settings)


@STEPS.register("comet-oracle")
def _comet_oracle(args, settings) -> None:
    from polyfuse.comet_score import run_comet_oracle

    run_comet_oracle(args.items, args.inputs[0], args.out, settings=settings)


@STEPS.register("mbr-comet")
def _mbr_comet(args, settings) -> None:
    from polyfuse.comet_score import run_mbr_comet

    run_mbr_comet(args.items, args.inputs[0], args.out, settings=settings)


def _reward_scorer(args, settings):
    from polyfuse.reward import RewardModel
    from polyfuse.select import make_scorer
    from polyfuse.tasks import task_kind

    reward_model = RewardModel(
        settings["model"],
        settings["device"],
        int(settings["batch_size"]),
        int(settings["max_length"]),
        settings.get("dtype"),
    )
    return make_scorer("reward_model", task_kind(args.kind), reward_model=reward_model)


@STEPS.register("select-rm")
def _select_rm(args, settings) -> None:
    from polyfuse.select import run_select

    run_select(args.items, args.inputs[0], args.out, scorer=_reward_scorer(args, settings))


@STEPS.register("target-scores-rm")
def _target_scores_rm(args, settings) -> None:
    from polyfuse import methods
    from polyfuse.select import run_target_scores

    pools, targets = args.inputs
    scorer = _reward_scorer(args, settings)
    run_target_scores(args.items, pools, targets, args.out, scorer=scorer, method=methods.bon("reward_model"))


@STEPS.register("finetune")
def _finetune(args, settings) -> None:
    from polyfuse.finetune import train_student, use_threads

    use_threads(args.threads)
    train_student(args.inputs, args.out, args.set_name, settings, args.cache)


@STEPS.register("export-base")
def _export_base(args, settings) -> None:
    from polyfuse.finetune import export_base, use_threads

    use_threads(args.threads)
    export_base(args.out, settings, args.cache)


if __name__ == "__main__":
    main()
