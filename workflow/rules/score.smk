rule score:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        outputs="results/{task}/{lang}/outputs/{model}/{method}.jsonl",
    output:
        scores="results/{task}/{lang}/scores/{model}/{method}.jsonl",
        summary="results/{task}/{lang}/scores/{model}/{method}.summary.json",
    wildcard_constraints:
        task=alternatives(METRIC_TASKS),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
    log:
        "results/logs/score/{task}/{lang}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/score/{task}/{lang}/{model}/{method}.tsv"
    conda:
        "../../envs/score.yaml"
    script:
        "../scripts/score.py"
