"""The study's DAG from its config: which samplers, methods and files each rule is asked for.

Plain Python, so it is unit-tested without Snakemake; workflow/rules/common.smk builds one `StudyDag` from the
loaded config and wires its methods into the rules. Paths are those of the rules' outputs (results/...).
"""

from __future__ import annotations

from collections.abc import Mapping

from polyfuse import aggregators, methods
from polyfuse.config import analysed_samplers, analysis_variants, student_models, zoo_cells, zoo_model
from polyfuse.pools import pool_members
from polyfuse.selectors import ANSWER_KINDS, MBR_COMET, MODEL_SELECTORS
from polyfuse.tasks import task_kind


class StudyDag:
    """A loaded study config (polyfuse.settings.load_config), read as the rules need it."""

    def __init__(self, config: dict):
        self.config = config
        self.tasks = config["tasks"]
        # Test tasks are scored and reported; train tasks are the prompt pools of the synthetic-data sets.
        self.test_tasks = {task: spec for task, spec in self.tasks.items() if spec["role"] == "test"}
        self.train_tasks = {task: spec for task, spec in self.tasks.items() if spec["role"] == "train"}
        self.study = config["study"]
        self.distill = config.get("distill")
        self.sets = self.distill["sets"] if self.distill else {}
        # Each student is one more model: the base student and one per set, fine-tuned and exported to GGUF.
        self.students = student_models(config) if self.distill else {}
        self.models = {**config["models"], **self.students}
        # A pool's members sample at the pool's temperature, or the study's, unless they set their own.
        self.pools = {
            name: pool_members(name, {"temperature": self.study["temperature"], **spec}, config["models"])
            for name, spec in config["pools"].items()
        }
        self.judged_tasks = [
            task for task, spec in self.test_tasks.items() if task_kind(spec["kind"]).metrics[0] == "winrate"
        ]
        self.bon = [methods.bon(selector) for selector in self.study["selectors"]]
        self.comet = config["comet"]
        self.translation_tasks = [task for task, spec in self.test_tasks.items() if spec["kind"] == "translation"]
        # The analyses' derived pools (subsets, injections, orders) of every analysed cell's samplers.
        self.analyses = config.get("analyses")
        self.variants = analysis_variants(config)
        self.zoo = config.get("zoo")
        self.zoo_cells = zoo_cells(config)
        self.zoo_tasks = list(self.zoo_cells)

    def max_tokens(self, task: str) -> int:
        return self.tasks[task].get("max_tokens", task_kind(self.tasks[task]["kind"]).max_tokens)

    def sampling_job(self, wildcards: Mapping[str, str]) -> tuple[str, dict, dict]:
        """What a sampling job draws: its model, how many candidates per item (and the seed), and the sampling
        params. A pool member draws its own count at its own temperature; a student answers once; any other
        sampler draws study.n candidates."""
        if "member" in wildcards:
            member = self.pools[wildcards["pool"]][int(wildcards["member"])]
            model, n, temperature = member["model"], member["n"], member["temperature"]
        elif wildcards["model"] in self.students:
            model, n, temperature = wildcards["model"], 1, self.distill["student"]["temperature"]
        else:
            model, n, temperature = wildcards["model"], self.study["n"], self.study["temperature"]
        sampling = {
            "temperature": temperature,
            "top_p": self.study["top_p"],
            "max_tokens": self.max_tokens(wildcards["task"]),
        }
        return model, {"n": n, "seed": self.study["seed"]}, sampling

    def scorer_model(self, selector: str) -> str | None:
        """The model a BoN selector scores with: the one it names (<scorer>@<model>), else study.scorer_models'."""
        scorer, model = methods.scorer_of(selector)
        return model or self.study["scorer_models"].get(scorer)

    def job_model(self, rule: str, wildcards: Mapping[str, str]) -> str | None:
        """The model a job of `rule` runs, from its wildcards (None: none): what its cluster resources, its
        environment and the cost forecast follow. The torch group's models are named as their sections name them."""
        if rule in ("sample", "sample_member"):
            return self.sampling_job(wildcards)[0]
        if rule in ("fuse", "aggregate"):
            return wildcards["fusor"]
        if rule in ("select", "target_scores"):
            return self.scorer_model(wildcards["selector"])
        if rule in ("judge", "head_to_head"):
            return self.config["judge"].get("model")
        if rule == "reference":
            return self.tasks[wildcards["task"]]["reference"].get("model")
        if rule in ("select_reward_model", "target_scores_reward_model"):
            return self.config["reward_model"]["model"]
        if rule in ("comet", "comet_oracle", "mbr_comet"):
            return self.comet["model"]
        if rule == "finetune":
            return methods.student(wildcards["set"])
        return None

    def samplers(self, task: str) -> list[str]:
        """The samplers (models or pools) of a test task's test-time comparison."""
        return self.tasks[task].get("samplers", self.study["samplers"])

    def students_of(self, task: str) -> list[str]:
        return list(self.students) if self.distill and task in self.distill["evaluate"] else []

    def fusion_methods(self, task: str) -> list[str]:
        return [methods.fusion(fusor) for fusor in self.tasks[task].get("fusors", self.study["fusors"])]

    def head_to_head(self, task: str) -> list[str]:
        """FusioN against each BoN variant, judged head-to-head on chat tasks."""
        return [methods.pair(fusion, bon) for fusion in self.fusion_methods(task) for bon in self.bon]

    def derived_samplers(self, task: str, family: str | None = None) -> list[str]:
        """The derived pools of a task's samplers for one analysis family (every family by default)."""
        if not self.analyses or task not in self.analyses["cells"]:
            return []
        return [
            methods.derived(sampler, variant)
            for sampler in analysed_samplers(self.config, task)
            for variant in self.variants
            if family is None or methods.parse_variant(variant)[0] == family
        ]

    def methods_of(self, task: str, sampler: str | None = None) -> list[str]:
        """The methods applied to a sampler's pools of a task; a student answers once, so only `single`.

        A derived pool gets BoN and FusioN; a position-bias pool only FusioN (selection does not see an order).
        """
        if sampler in self.students:
            return ["single"]
        variant = methods.split_derived(sampler or "")[1]
        if variant:
            shown = methods.parse_variant(variant)[0] == "order"
            return self.fusion_methods(task) if shown else [*self.bon, *self.fusion_methods(task)]
        oracle = [methods.ORACLE] if task_kind(self.tasks[task]["kind"]).has_oracle else []
        if task in self.translation_tasks and self.comet["model"] and self.comet["oracle"]:
            oracle.append(methods.COMET_ORACLE)
        return ["single", *oracle, *self.bon, *self.fusion_methods(task)]

    def set_methods(self, pool: str) -> list[str]:
        """Every method some set applies to `pool`: the target of each, and the others shown beside it."""
        return sorted({spec["method"] for spec in self.sets.values() if spec["pool"] == pool})

    def target_scorings(self, pool: str) -> list[tuple[str, str]]:
        """(fusion, BoN) method pairs of `pool`'s sets: each fused answer is scored by each BoN method's scorer."""
        made = self.set_methods(pool)
        by_family = {family: [m for m in made if methods.parse(m)[0] == family] for family in ("fusion", "bon")}
        return [(fusion, selector) for fusion in by_family["fusion"] for selector in by_family["bon"]]

    def cells(self, task: str, pattern: str, with_students: bool = False) -> list[str]:
        """`pattern` for every (language, sampler) cell of `task`; with its students when asked."""
        return [
            pattern.format(task=task, lang=lang, model=model)
            for lang in self.tasks[task]["languages"]
            for model in [*self.samplers(task), *(self.students_of(task) if with_students else [])]
        ]

    def score_files(self, suffix: str) -> list[str]:
        """Every method's scores (the students' included), and on judged tasks the head-to-head verdicts."""
        per_method = [
            f"results/{task}/{lang}/scores/{sampler}/{method}{suffix}"
            for task in self.test_tasks
            for lang in self.tasks[task]["languages"]
            for sampler in [*self.samplers(task), *self.students_of(task)]
            for method in self.methods_of(task, sampler)
        ]
        pairs = [
            path
            for task in self.judged_tasks
            for pair in self.head_to_head(task)
            for path in self.cells(task, f"results/{{task}}/{{lang}}/scores/{{model}}/h2h/{pair}{suffix}")
        ]
        comet = [
            path
            for task in self.translation_tasks
            for path in self.cells(
                task, f"results/{{task}}/{{lang}}/scores/{{model}}/comet{suffix}", with_students=True
            )
            if self.comet["model"]
        ]
        return per_method + pairs + comet

    def fusion_files(self) -> list[str]:
        return [
            path
            for task in self.test_tasks
            for method in self.fusion_methods(task)
            for path in self.cells(task, f"results/{{task}}/{{lang}}/outputs/{{model}}/{method}.jsonl")
        ]

    def distill_files(self, name: str) -> list[str]:
        """A file of every set on every training task and language: `sft.jsonl` or `card.json`."""
        return [path for set_name in self.sets for path in self.set_files(set_name, name)]

    def set_files(self, set_name: str, name: str = "sft.jsonl") -> list[str]:
        """A set's files on every training task and language: the SFT files its student is trained on."""
        return [
            f"results/distill/{set_name}/{task}/{lang}/{name}"
            for task in self.train_tasks
            for lang in self.tasks[task]["languages"]
        ]

    def student_file(self, model: str) -> list[str]:
        """The GGUF a student model loads, so sampling a student waits for its fine-tune; other models have none."""
        return [self.students[model]["path"]] if model in self.students else []

    def report_outputs(self) -> list[str]:
        per_task = [f"results/tables/{task}.{ext}" for task in self.test_tasks for ext in ("csv", "md")]
        distill = [f"results/{name}" for name in ("tables/distill.csv", "tables/distill.md", "figures/distill.png")]
        distill += ["results/figures/distill.pdf"]
        return (
            per_task
            + [f"results/figures/{task}.png" for task in self.test_tasks]
            + ["results/tables/fusion_parse.csv", "results/report.md"]
            + (distill if self.distill else [])
        )

    def zoo_methods(self, task: str) -> list[str]:
        """The zoo's methods on `task`: each selector and aggregator that applies to its kind (majority votes on
        extractable answers, COMET-MBR and USI work on translations, COMET-MBR with a COMET model), the model-run ones
        under their model (zoo.models, zoo.model)."""
        if task not in self.zoo_tasks:
            return []
        kind = self.tasks[task]["kind"]
        applies = {"majority": kind in ANSWER_KINDS, MBR_COMET: task in self.translation_tasks and self.comet["model"]}
        selection = [
            methods.bon(
                methods.scored_by(selector, zoo_model(self.zoo, selector)) if selector in MODEL_SELECTORS else selector
            )
            for selector in self.zoo["selectors"]
            if applies.get(selector, True)
        ]
        aggregation = [
            methods.fusion(zoo_model(self.zoo, name), name)
            for name in self.zoo["aggregators"]
            if aggregators.applies(name, kind)
        ]
        return selection + aggregation

    def zoo_files(self, folder: str, suffix: str = ".jsonl") -> list[str]:
        """The `folder` (outputs or scores) file of every method the zoo table compares, the study's own included,
        on the study samplers' pools of each zoo cell."""
        return [
            f"results/{task}/{lang}/{folder}/{sampler}/{method}{suffix}"
            for task, languages in self.zoo_cells.items()
            for lang in languages
            for sampler in self.samplers(task)
            for method in [*self.methods_of(task, sampler), *self.zoo_methods(task)]
        ]

    def zoo_outputs(self) -> list[str]:
        """The zoo's table (CSV and Markdown) and quality-against-cost figure per task."""
        return [
            f"results/{folder}/zoo_{task}.{ext}"
            for task in self.zoo_tasks
            for folder, exts in (("tables", ("csv", "md")), ("figures", ("png", "pdf")))
            for ext in exts
        ]

    def analysed_pools(self, families=()) -> list[tuple[str, str, str]]:
        """(task, language, sampler) of every analysed cell: its samplers and their derived pools of `families`."""
        if not self.analyses:
            return []
        return [
            (task, lang, sampler)
            for task, languages in self.analyses["cells"].items()
            for lang in languages
            for sampler in [
                *analysed_samplers(self.config, task),
                *(d for family in families for d in self.derived_samplers(task, family)),
            ]
        ]

    def analysis_pools(self, families=()) -> list[str]:
        return [f"results/{task}/{lang}/pools/{sampler}.jsonl" for task, lang, sampler in self.analysed_pools(families)]

    def analysis_files(self, folder: str, families=()) -> list[str]:
        """The `folder` (outputs or scores) file of every method of every analysed sampler of `families`."""
        return [
            f"results/{task}/{lang}/{folder}/{sampler}/{method}.jsonl"
            for task, lang, sampler in self.analysed_pools(families)
            for method in self.methods_of(task, sampler)
        ]

    def claim_fusions(self) -> list[str]:
        """The fusion outputs the claims test: the study's cells, and the N-scaling subsets' (whose parse share
        counts)."""
        study = [
            f"results/{task}/{lang}/outputs/{sampler}/{method}.jsonl"
            for task in self.test_tasks
            for lang in self.tasks[task]["languages"]
            for sampler in self.samplers(task)
            for method in self.fusion_methods(task)
        ]
        subsets = [
            f"results/{task}/{lang}/outputs/{sampler}/{method}.jsonl"
            for task, lang, sampler in (
                self.analysed_pools(["subset"]) if self.analyses and self.analyses["sizes"] else []
            )
            for method in self.fusion_methods(task)
        ]
        return list(dict.fromkeys(study + subsets))

    def fusor_choice_files(self, folder: str, families=("fusion", "bon")) -> list[str]:
        """The `folder` file of each model of analyses.fusors as the fusor and as the BoN scorer, per analysed
        cell."""
        choice = self.analyses.get("fusors") if self.analyses else None
        if not choice:
            return []
        compared = [
            method
            for model in choice["models"]
            for method in (methods.fusion(model), methods.bon(methods.scored_by(choice["scorer"], model)))
        ]
        return [
            f"results/{task}/{lang}/{folder}/{sampler}/{method}.jsonl"
            for task, lang, sampler in self.analysed_pools(())
            for method in compared
            if methods.parse(method)[0] in families
        ]

    def analysis_outputs(self) -> list[str]:
        """The analyses' tables and figures: diagnostics always, each other analysis when its config asks for it."""
        if not self.analyses:
            return []
        analyses = self.analyses
        asked = {
            "diagnostics": True,
            "nscaling": analyses["sizes"],
            "compute": analyses["sizes"],
            "robustness": analyses["injections"]["kinds"] and analyses["injections"]["k"],
            "position": analyses["orders"],
            "fusors": analyses.get("fusors"),
        }
        return [f"results/analyses/{name}.{ext}" for name, wanted in asked.items() if wanted for ext in ("csv", "png")]

    def study_methods(self) -> list[str]:
        """Every method of the study in display order: each figure colours a method the same way."""
        return sorted(
            {
                method
                for task in self.test_tasks
                for sampler in self.samplers(task)
                for method in self.methods_of(task, sampler)
            },
            key=methods.method_rank,
        )
