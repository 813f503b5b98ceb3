rule report:
    input:
        scores=score_files(".jsonl"),
        summaries=score_files(".summary.json"),
        fusions=fusion_files(),
    output:
        **{f"{task}_{ext}": f"results/tables/{task}.{ext}" for task in TASKS for ext in ("csv", "md")},
        **{f"{task}_figure": report(f"results/figures/{task}.png", category="Figures") for task in TASKS},
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
        report=lambda w: {**config["report"], "tasks": TASKS, "fallback": config["fusion"]["fallback"]},
    script:
        "../scripts/report.py"
