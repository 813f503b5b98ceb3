rule select:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
        pools="results/{task}/{lang}/pools/{model}.jsonl",
    output:
        outputs="results/{task}/{lang}/outputs/{model}/{selector}.jsonl",
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        models=lambda w: model_params(*filter(None, [STUDY.get("scorer_model")])),
        scorer_model=STUDY.get("scorer_model"),
        cache=lambda w: cache_file(STUDY.get("scorer_model", "selection")),
    threads: config["threads"]
    log:
        "results/logs/select/{task}/{lang}/{model}/{selector}.log",
    benchmark:
        "results/benchmarks/select/{task}/{lang}/{model}/{selector}.tsv"
    conda:
        "../../envs/llamacpp.yaml"
    script:
        "../scripts/select_best.py"
