# Chat tasks have no reference answer to score against: a judge model compares each method's
# answer with a reference system's answer (win rate), and FusioN with BoN head-to-head.


rule reference:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
        answers=reference_answers,
    output:
        reference="results/{task}/{lang}/reference.jsonl",
    log:
        "results/logs/reference/{task}/{lang}.log",
    benchmark:
        "results/benchmarks/reference/{task}/{lang}.tsv"
    conda:
        model_env(reference_model)
    threads: config["threads"]
    resources:
        **model_resources(reference_model),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        reference=lambda w: TASKS[w.task]["reference"],
        models=lambda w: model_params(*filter(None, [reference_model(w)])),
        max_tokens=lambda w: TASKS[w.task]["reference"].get("max_tokens", max_tokens(w.task)),
        seed=STUDY["seed"],
        cache=lambda w: cache_file(reference_model(w) or "reference"),
    script:
        "../scripts/reference.py"


rule judge:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
        outputs="results/{task}/{lang}/outputs/{model}/{method}.jsonl",
        opponent="results/{task}/{lang}/reference.jsonl",
    output:
        scores="results/{task}/{lang}/scores/{model}/{method}.jsonl",
        summary="results/{task}/{lang}/scores/{model}/{method}.summary.json",
    log:
        "results/logs/judge/{task}/{lang}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/judge/{task}/{lang}/{model}/{method}.tsv"
    wildcard_constraints:
        task=alternatives(JUDGED_TASKS),
    conda:
        model_env(judge_model)
    threads: config["threads"]
    resources:
        **model_resources(judge_model),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        judge=config["judge"],
        models=model_params(*filter(None, [config["judge"].get("model")])),
        label=judge_label,
        cache=cache_file(config["judge"].get("model", "judge")),
    script:
        "../scripts/judge.py"


use rule judge as head_to_head with:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
        outputs=lambda w: f"results/{w.task}/{w.lang}/outputs/{w.model}/{methods.split_pair(w.pair)[0]}.jsonl",
        opponent=lambda w: f"results/{w.task}/{w.lang}/outputs/{w.model}/{methods.split_pair(w.pair)[1]}.jsonl",
    output:
        scores="results/{task}/{lang}/scores/{model}/h2h/{pair}.jsonl",
        summary="results/{task}/{lang}/scores/{model}/h2h/{pair}.summary.json",
    log:
        "results/logs/head_to_head/{task}/{lang}/{model}/{pair}.log",
    benchmark:
        "results/benchmarks/head_to_head/{task}/{lang}/{model}/{pair}.tsv"
