rule sample:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
    output:
        pools="results/{task}/{lang}/pools/{model}.jsonl",
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
    threads: config["threads"]
    resources:
        gpu=lambda w: GPUS(w.model),
        mem_mb=lambda w: MEM_MB(w.model),
        runtime=lambda w: RUNTIME(w.model),
    log:
        "results/logs/sample/{task}/{lang}/{model}.log",
    benchmark:
        "results/benchmarks/sample/{task}/{lang}/{model}.tsv"
    conda:
        "../../envs/llamacpp.yaml"
    script:
        "../scripts/sample.py"
