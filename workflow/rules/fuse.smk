rule fuse:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        pools="results/{task}/{lang}/pools/{model}.jsonl",
    output:
        outputs="results/{task}/{lang}/outputs/{model}/fusion-{fusor}.jsonl",
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        models=lambda w: model_params(w.fusor),
        fusion=config["fusion"],
        seed=STUDY["seed"],
        cache=lambda w: cache_file(w.fusor),
    threads: config["threads"]
    resources:
        gpu=lambda w: GPUS(w.fusor),
        mem_mb=lambda w: MEM_MB(w.fusor),
        runtime=lambda w: RUNTIME(w.fusor),
    log:
        "results/logs/fuse/{task}/{lang}/{model}/{fusor}.log",
    benchmark:
        "results/benchmarks/fuse/{task}/{lang}/{model}/{fusor}.tsv"
    conda:
        "../../envs/llamacpp.yaml"
    script:
        "../scripts/fuse.py"
