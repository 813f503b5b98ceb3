rule fuse:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
        pools="results/{task}/{lang}/pools/{model}.jsonl",
    output:
        outputs="results/{task}/{lang}/outputs/{model}/fusion-{fusor}.jsonl",
    log:
        "results/logs/fuse/{task}/{lang}/{model}/{fusor}.log",
    benchmark:
        "results/benchmarks/fuse/{task}/{lang}/{model}/{fusor}.tsv"
    conda:
        model_env(lambda w: w.fusor)
    threads: config["threads"]
    resources:
        **model_resources(lambda w: w.fusor),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        models=lambda w: model_params(w.fusor),
        fusion=config["fusion"],
        zoo=zoo_params,
        seed=STUDY["seed"],
        cache=lambda w: cache_file(w.fusor),
    script:
        "../scripts/fuse.py"


# Another aggregation method (polyfuse/aggregators.py) run by a fusor model on the same pools: the method zoo.
use rule fuse as aggregate with:
    output:
        outputs="results/{task}/{lang}/outputs/{model}/fusion-{aggregator}@{fusor}.jsonl",
    log:
        "results/logs/aggregate/{task}/{lang}/{model}/{aggregator}@{fusor}.log",
    benchmark:
        "results/benchmarks/aggregate/{task}/{lang}/{model}/{aggregator}@{fusor}.tsv"
