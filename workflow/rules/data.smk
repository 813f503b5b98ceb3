rule items:
    input:
        dataset_file,
    output:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
    params:
        task=lambda w: TASKS[w.task],
    log:
        "results/logs/items/{task}/{lang}.log",
    benchmark:
        "results/benchmarks/items/{task}/{lang}.tsv"
    conda:
        "../../envs/score.yaml"
    script:
        "../scripts/items.py"
