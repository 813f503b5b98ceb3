rule items:
    input:
        dataset_file,
    output:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
    log:
        "results/logs/items/{task}/{lang}.log",
    benchmark:
        "results/benchmarks/items/{task}/{lang}.tsv"
    conda:
        "../../envs/score.yaml"
    resources:
        slurm_partition=slurm_partition(gpus=0),
    params:
        task=lambda w: {key: value for key, value in TASKS[w.task].items() if key != "role"},  # role: no data change
        seed=STUDY["seed"],
    script:
        "../scripts/items.py"
