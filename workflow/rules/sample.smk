rule sample:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
    output:
        pools="results/{task}/{lang}/pools/{model}.jsonl",
    log:
        "results/logs/sample/{task}/{lang}/{model}.log",
    benchmark:
        "results/benchmarks/sample/{task}/{lang}/{model}.tsv"
    conda:
        model_env(lambda w: w.model)
    threads: config["threads"]
    resources:
        **model_resources(lambda w: w.model),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        models=lambda w: model_params(w.model),
        study=lambda w: {key: STUDY[key] for key in ("n", "seed")},
        sampling=lambda w: {
            "temperature": STUDY["temperature"],
            "top_p": STUDY["top_p"],
            "max_tokens": max_tokens(w.task),
        },
        cache=lambda w: cache_file(w.model),
    script:
        "../scripts/sample.py"
