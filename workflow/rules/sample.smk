rule sample:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
        student=lambda w: student_file(w.model),
    output:
        pools="results/{task}/{lang}/pools/{model}.jsonl",
    log:
        "results/logs/sample/{task}/{lang}/{model}.log",
    benchmark:
        "results/benchmarks/sample/{task}/{lang}/{model}.tsv"
    wildcard_constraints:
        model=alternatives(MODELS),
    conda:
        model_env(sampling_model)
    threads: config["threads"]
    resources:
        **model_resources(sampling_model),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        models=lambda w: model_params(sampling_model(w)),
        study=lambda w: sampling_job(w)[1],
        sampling=lambda w: sampling_job(w)[2],
        cache=lambda w: cache_file(sampling_model(w)),
    script:
        "../scripts/sample.py"


# A member of a multi-model pool samples like any sampler, with its own model, count and temperature.
use rule sample as sample_member with:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
    output:
        pools="results/{task}/{lang}/pools/{pool}/{member}.jsonl",
    log:
        "results/logs/sample_member/{task}/{lang}/{pool}/{member}.log",
    benchmark:
        "results/benchmarks/sample_member/{task}/{lang}/{pool}/{member}.tsv"


rule pool:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        members=lambda w: [f"results/{w.task}/{w.lang}/pools/{w.pool}/{k}.jsonl" for k in range(len(POOLS[w.pool]))],
    output:
        pools="results/{task}/{lang}/pools/{pool}.jsonl",
    log:
        "results/logs/pool/{task}/{lang}/{pool}.log",
    benchmark:
        "results/benchmarks/pool/{task}/{lang}/{pool}.tsv"
    conda:
        "../../envs/llamacpp.yaml"
    resources:
        slurm_partition=slurm_partition(gpus=0),
    params:
        members=lambda w: POOLS[w.pool],
    script:
        "../scripts/pool.py"
