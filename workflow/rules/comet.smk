# Rules of the torch group (COMET, reward models): unbabel-comet pins numpy<2 and transformers<5,
# so they run in their own environment and call the library through `python -m polyfuse.cli`.


rule comet:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        outputs=lambda w: [
            f"results/{w.task}/{w.lang}/outputs/{w.model}/{m}.jsonl" for m in methods_of(w.task, w.model)
        ],
    output:
        scores="results/{task}/{lang}/scores/{model}/comet.jsonl",
        summary="results/{task}/{lang}/scores/{model}/comet.summary.json",
    log:
        "results/logs/comet/{task}/{lang}/{model}.log",
    benchmark:
        "results/benchmarks/comet/{task}/{lang}/{model}.tsv"
    wildcard_constraints:
        task=alternatives(TRANSLATION_TASKS),
    conda:
        "../../envs/comet.yaml"
    resources:
        gpu=COMET["gpus"],
        mem_mb=COMET["mem_mb"],
        slurm_partition=slurm_partition(COMET["gpus"]),
    params:
        python=TORCH_PYTHON,
        settings=json.dumps(COMET),
    shell:
        "{params.python} -m polyfuse.cli comet --items {input.items_file} --inputs {input.outputs}"
        " --out {output.scores} --summary {output.summary} --settings {params.settings:q} --log {log}"


rule comet_oracle:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        pools="results/{task}/{lang}/pools/{model}.jsonl",
    output:
        outputs=f"results/{{task}}/{{lang}}/outputs/{{model}}/{methods.COMET_ORACLE}.jsonl",
    log:
        "results/logs/comet_oracle/{task}/{lang}/{model}.log",
    benchmark:
        "results/benchmarks/comet_oracle/{task}/{lang}/{model}.tsv"
    wildcard_constraints:
        task=alternatives(TRANSLATION_TASKS),
    conda:
        "../../envs/comet.yaml"
    resources:
        gpu=COMET["gpus"],
        mem_mb=COMET["mem_mb"],
        slurm_partition=slurm_partition(COMET["gpus"]),
    params:
        python=TORCH_PYTHON,
        settings=json.dumps(COMET),
    shell:
        "{params.python} -m polyfuse.cli comet-oracle --items {input.items_file} --inputs {input.pools}"
        " --out {output.outputs} --settings {params.settings:q} --log {log}"


# The zoo's MBR with COMET as the utility: each candidate's mean COMET against the other candidates.
rule mbr_comet:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        pools="results/{task}/{lang}/pools/{model}.jsonl",
    output:
        outputs="results/{task}/{lang}/outputs/{model}/bon-mbr_comet.jsonl",
    log:
        "results/logs/mbr_comet/{task}/{lang}/{model}.log",
    benchmark:
        "results/benchmarks/mbr_comet/{task}/{lang}/{model}.tsv"
    wildcard_constraints:
        task=alternatives(TRANSLATION_TASKS),
    conda:
        "../../envs/comet.yaml"
    resources:
        gpu=COMET["gpus"],
        mem_mb=COMET["mem_mb"],
        slurm_partition=slurm_partition(COMET["gpus"]),
    params:
        python=TORCH_PYTHON,
        settings=json.dumps({**COMET, **ZOO.get("mbr_comet", {})}),
    shell:
        "{params.python} -m polyfuse.cli mbr-comet --items {input.items_file} --inputs {input.pools}"
        " --out {output.outputs} --settings {params.settings:q} --log {log}"


rule select_reward_model:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        pools="results/{task}/{lang}/pools/{model}.jsonl",
    output:
        outputs="results/{task}/{lang}/outputs/{model}/bon-reward_model.jsonl",
    log:
        "results/logs/select_reward_model/{task}/{lang}/{model}.log",
    benchmark:
        "results/benchmarks/select_reward_model/{task}/{lang}/{model}.tsv"
    conda:
        "../../envs/comet.yaml"
    threads: config["threads"]
    resources:
        gpu=config["reward_model"]["gpus"],
        mem_mb=config["reward_model"]["mem_mb"],
        slurm_partition=slurm_partition(config["reward_model"]["gpus"]),
    params:
        python=TORCH_PYTHON,
        kind=lambda w: TASKS[w.task]["kind"],
        settings=json.dumps(config["reward_model"]),
    shell:
        "{params.python} -m polyfuse.cli select-rm --items {input.items_file} --inputs {input.pools}"
        " --out {output.outputs} --kind {params.kind} --settings {params.settings:q} --log {log}"


# The reward model's score of each fused answer of a distill pool, for the SFT records (see target_scores).
rule target_scores_reward_model:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        pools="results/{task}/{lang}/pools/{model}.jsonl",
        targets="results/{task}/{lang}/outputs/{model}/{method}.jsonl",
    output:
        scores="results/{task}/{lang}/target_scores/{model}/{method}/bon-reward_model.jsonl",
    log:
        "results/logs/target_scores_reward_model/{task}/{lang}/{model}/{method}.log",
    benchmark:
        "results/benchmarks/target_scores_reward_model/{task}/{lang}/{model}/{method}.tsv"
    conda:
        "../../envs/comet.yaml"
    threads: config["threads"]
    resources:
        gpu=config["reward_model"]["gpus"],
        mem_mb=config["reward_model"]["mem_mb"],
        slurm_partition=slurm_partition(config["reward_model"]["gpus"]),
    params:
        python=TORCH_PYTHON,
        kind=lambda w: TASKS[w.task]["kind"],
        settings=json.dumps(config["reward_model"]),
    shell:
        "{params.python} -m polyfuse.cli target-scores-rm --items {input.items_file} --inputs {input.pools}"
        " {input.targets} --out {output.scores} --kind {params.kind} --settings {params.settings:q} --log {log}"
