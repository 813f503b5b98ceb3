rule score:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        outputs="results/{task}/{lang}/outputs/{model}/{method}.jsonl",
    output:
        scores="results/{task}/{lang}/scores/{model}/{method}.jsonl",
        summary="results/{task}/{lang}/scores/{model}/{method}.summary.json",
    log:
        "results/logs/score/{task}/{lang}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/score/{task}/{lang}/{model}/{method}.tsv"
    wildcard_constraints:
        task=alternatives(METRIC_TASKS),
    conda:
        "../../envs/score.yaml"
    resources:
        slurm_partition=slurm_partition(gpus=0),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
    script:
        "../scripts/score.py"
