# Chat tasks have no reference answer to score against: a judge model compares each method's
# answer with a reference system's answer (win rate), and FusioN with BoN head-to-head.


rule reference:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        shots="results/{task}/{lang}/shots.jsonl",
    output:
        reference="results/{task}/{lang}/reference.jsonl",
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        reference=lambda w: TASKS[w.task]["reference"],
        models=lambda w: model_params(*filter(None, [TASKS[w.task]["reference"].get("model")])),
        max_tokens=lambda w: max_tokens(w.task),
        seed=STUDY["seed"],
        cache=lambda w: cache_file(TASKS[w.task]["reference"].get("model", "reference")),
    threads: config["threads"]
    resources:
        gpu=lambda w: GPUS(TASKS[w.task]["reference"].get("model")),
        mem_mb=lambda w: MEM_MB(TASKS[w.task]["reference"].get("model")),
        runtime=lambda w: RUNTIME(TASKS[w.task]["reference"].get("model")),
    log:
        "results/logs/reference/{task}/{lang}.log",
    benchmark:
        "results/benchmarks/reference/{task}/{lang}.tsv"
    conda:
        "../../envs/llamacpp.yaml"
    script:
        "../scripts/reference.py"


rule judge:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        outputs="results/{task}/{lang}/outputs/{model}/{method}.jsonl",
        opponent="results/{task}/{lang}/reference.jsonl",
    output:
        scores="results/{task}/{lang}/scores/{model}/{method}.jsonl",
        summary="results/{task}/{lang}/scores/{model}/{method}.summary.json",
    wildcard_constraints:
        task=alternatives(JUDGED_TASKS),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        judge=config["judge"],
        models=model_params(*filter(None, [config["judge"].get("model")])),
        label=None,
        cache=cache_file(config["judge"].get("model", "judge")),
    threads: config["threads"]
    resources:
        gpu=lambda w: GPUS(config["judge"].get("model")),
        mem_mb=lambda w: MEM_MB(config["judge"].get("model")),
        runtime=lambda w: RUNTIME(config["judge"].get("model")),
    log:
        "results/logs/judge/{task}/{lang}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/judge/{task}/{lang}/{model}/{method}.tsv"
    conda:
        "../../envs/llamacpp.yaml"
    script:
        "../scripts/judge.py"


rule head_to_head:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        outputs=lambda w: f"results/{w.task}/{w.lang}/outputs/{w.model}/{w.pair.split('__vs__')[0]}.jsonl",
        opponent=lambda w: f"results/{w.task}/{w.lang}/outputs/{w.model}/{w.pair.split('__vs__')[1]}.jsonl",
    output:
        scores="results/{task}/{lang}/scores/{model}/h2h/{pair}.jsonl",
        summary="results/{task}/{lang}/scores/{model}/h2h/{pair}.summary.json",
    wildcard_constraints:
        task=alternatives(JUDGED_TASKS),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        judge=config["judge"],
        models=model_params(*filter(None, [config["judge"].get("model")])),
        label=lambda w: w.pair.replace("__vs__", " vs "),
        cache=cache_file(config["judge"].get("model", "judge")),
    threads: config["threads"]
    resources:
        gpu=lambda w: GPUS(config["judge"].get("model")),
        mem_mb=lambda w: MEM_MB(config["judge"].get("model")),
        runtime=lambda w: RUNTIME(config["judge"].get("model")),
    log:
        "results/logs/head_to_head/{task}/{lang}/{model}/{pair}.log",
    benchmark:
        "results/benchmarks/head_to_head/{task}/{lang}/{model}/{pair}.tsv"
    conda:
        "../../envs/llamacpp.yaml"
    script:
        "../scripts/judge.py"
