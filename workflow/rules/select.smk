rule select:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
        pools="results/{task}/{lang}/pools/{model}.jsonl",
    output:
        outputs="results/{task}/{lang}/outputs/{model}/{selector}.jsonl",
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        scorer_model=lambda w: scorer_model(w.selector),
        models=lambda w: model_params(*filter(None, [scorer_model(w.selector)])),
        judge=config["judge"],
        cache=lambda w: cache_file(scorer_model(w.selector) or "selection"),
    threads: config["threads"]
    resources:
        gpu=lambda w: GPUS(scorer_model(w.selector)),
        mem_mb=lambda w: MEM_MB(scorer_model(w.selector)),
        runtime=lambda w: RUNTIME(scorer_model(w.selector)),
    log:
        "results/logs/select/{task}/{lang}/{model}/{selector}.log",
    benchmark:
        "results/benchmarks/select/{task}/{lang}/{model}/{selector}.tsv"
    conda:
        "../../envs/llamacpp.yaml"
    script:
        "../scripts/select_best.py"
