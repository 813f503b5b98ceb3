rule select:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
        pools="results/{task}/{lang}/pools/{model}.jsonl",
    output:
        outputs="results/{task}/{lang}/outputs/{model}/{selector}.jsonl",
    log:
        "results/logs/select/{task}/{lang}/{model}/{selector}.log",
    benchmark:
        "results/benchmarks/select/{task}/{lang}/{model}/{selector}.tsv"
    conda:
        model_env(selector_model)
    threads: config["threads"]
    resources:
        **model_resources(selector_model),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        scorer_model=selector_model,
        models=lambda w: model_params(*filter(None, [selector_model(w)])),
        judge=config["judge"],
        zoo=zoo_params,
        loglik_normalization=STUDY["loglik_normalization"],
        cache=lambda w: cache_file(selector_model(w) or "selection"),
    script:
        "../scripts/select_best.py"


# Setting 2's SFT records keep the BoN scorer's score of the fused answer too, as Cohere's released cards do.
rule target_scores:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
        pools="results/{task}/{lang}/pools/{model}.jsonl",
        targets="results/{task}/{lang}/outputs/{model}/{method}.jsonl",
    output:
        scores="results/{task}/{lang}/target_scores/{model}/{method}/{selector}.jsonl",
    log:
        "results/logs/target_scores/{task}/{lang}/{model}/{method}/{selector}.log",
    benchmark:
        "results/benchmarks/target_scores/{task}/{lang}/{model}/{method}/{selector}.tsv"
    conda:
        model_env(selector_model)
    threads: config["threads"]
    resources:
        **model_resources(selector_model),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        scorer_model=selector_model,
        models=lambda w: model_params(*filter(None, [selector_model(w)])),
        judge=config["judge"],
        loglik_normalization=STUDY["loglik_normalization"],
        cache=lambda w: cache_file(selector_model(w) or "selection"),
    script:
        "../scripts/target_scores.py"
