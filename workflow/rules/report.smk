# The report's categories: one per setting; the analyses have their own (workflow/rules/analyses.smk).
SETTING_ONE = "Setting 1: test-time scaling"
SETTING_TWO = "Setting 2: synthetic data"


rule report:
    input:
        scores=score_files(".jsonl"),
        summaries=score_files(".summary.json"),
        fusions=fusion_files(),
        cards=distill_files("card.json"),
        trainings=[f"results/distill/{name}/student/train.json" for name in SETS],
    output:
        **{
            f"{task}_csv": report(
                f"results/tables/{task}.csv",
                caption="../report/tables.rst",
                category=SETTING_ONE,
                subcategory=task,
            )
            for task in TEST_TASKS
        },
        **{f"{task}_md": f"results/tables/{task}.md" for task in TEST_TASKS},
        **{
            f"{task}_figure": report(
                f"results/figures/{task}.png",
                caption="../report/task.rst",
                category=SETTING_ONE,
                subcategory=task,
            )
            for task in TEST_TASKS
        },
        **(
            {
                "distill_csv": report(
                    "results/tables/distill.csv", caption="../report/tables.rst", category=SETTING_TWO
                ),
                "distill_md": "results/tables/distill.md",
                "distill_figure": report(
                    "results/figures/distill.png", caption="../report/distill.rst", category=SETTING_TWO
                ),
                "distill_pdf": "results/figures/distill.pdf",
            }
            if DISTILL
            else {}
        ),
        parse="results/tables/fusion_parse.csv",
        report="results/report.md",
    log:
        "results/logs/report/report.log",
    benchmark:
        "results/benchmarks/report/report.tsv"
    conda:
        "../../envs/report.yaml"
    resources:
        slurm_partition=slurm_partition(gpus=0),
    params:
        report=lambda w: {
            **config["report"],
            "tasks": TEST_TASKS,
            "methods": STUDY_METHODS,
            "fallback": config["fusion"]["fallback"],
            **({"distill": DISTILL, "pools": POOLS} if DISTILL else {}),
        },
    script:
        "../scripts/report.py"
