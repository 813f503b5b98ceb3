rule report:
    input:
        scores=score_files(".jsonl"),
        summaries=score_files(".summary.json"),
        fusions=fusion_files(),
        cards=distill_files("card.json"),
        trainings=[f"results/distill/{name}/student/train.json" for name in SETS],
    output:
        **{f"{task}_{ext}": f"results/tables/{task}.{ext}" for task in TEST_TASKS for ext in ("csv", "md")},
        **{f"{task}_figure": report(f"results/figures/{task}.png", category="Figures") for task in TEST_TASKS},
        **(
            {
                "distill_csv": "results/tables/distill.csv",
                "distill_md": "results/tables/distill.md",
                "distill_figure": report("results/figures/distill.png", category="Figures"),
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
            "fallback": config["fusion"]["fallback"],
            **({"distill": DISTILL, "pools": POOLS} if DISTILL else {}),
        },
    script:
        "../scripts/report.py"
