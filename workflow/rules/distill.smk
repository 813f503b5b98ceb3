# The synthetic-data setting: each set turns a pool's answers to the training prompts into SFT targets, a
# student is fine-tuned per set (in the train environment), and the students answer the test tasks as samplers.


rule sft_set:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        pools=lambda w: f"results/{w.task}/{w.lang}/pools/{SETS[w.set]['pool']}.jsonl",
        outputs=lambda w: [
            f"results/{w.task}/{w.lang}/outputs/{SETS[w.set]['pool']}/{method}.jsonl"
            for method in set_methods(SETS[w.set]["pool"])
        ],
        evaluated=[
            f"results/{task}/{lang}/items.jsonl"
            for task in (DISTILL["evaluate"] if DISTILL else [])
            for lang in TASKS[task]["languages"]
        ],
        target_scores=lambda w: [
            f"results/{w.task}/{w.lang}/target_scores/{SETS[w.set]['pool']}/{method}/{selector}.jsonl"
            for method, selector in target_scorings(SETS[w.set]["pool"])
        ],
    output:
        sft="results/distill/{set}/{task}/{lang}/sft.jsonl",
        card="results/distill/{set}/{task}/{lang}/card.json",
    log:
        "results/logs/sft_set/{set}/{task}/{lang}.log",
    benchmark:
        "results/benchmarks/sft_set/{set}/{task}/{lang}.tsv"
    wildcard_constraints:
        task=alternatives(TRAIN_TASKS),
    conda:
        "../../envs/score.yaml"
    resources:
        slurm_partition=slurm_partition(gpus=0),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        methods=lambda w: set_methods(SETS[w.set]["pool"]),
        target_scores=lambda w: target_scorings(SETS[w.set]["pool"]),
        target=lambda w: SETS[w.set]["method"],
    script:
        "../scripts/sft_set.py"


rule finetune:
    input:
        sets=set_files,
        base=STUDENT_BASE,
    output:
        student=student_gguf("{set}"),
        loss="results/distill/{set}/student/loss.csv",
        training="results/distill/{set}/student/train.json",
    log:
        "results/logs/finetune/{set}.log",
    benchmark:
        "results/benchmarks/finetune/{set}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    resources:
        **FINETUNE_RESOURCES,
    params:
        python=TRAIN_PYTHON,
        out=lambda w, output: os.path.dirname(output.student),
        settings=json.dumps(FINETUNE),
        cache=os.path.join(config["cache_dir"], "students"),
    shell:
        "{params.python} -m polyfuse.cli finetune --inputs {input.sets} --out {params.out} --set {wildcards.set}"
        " --settings {params.settings:q} --threads {threads} --cache {params.cache} --log {log}"


# The untrained base student goes through the same export, so students differ from it only by their training.
rule student_base:
    input:
        base=STUDENT_BASE,
    output:
        student=student_gguf(methods.BASE_STUDENT),
    log:
        "results/logs/student_base/base.log",
    benchmark:
        "results/benchmarks/student_base/base.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    resources:
        **FINETUNE_RESOURCES,
    params:
        python=TRAIN_PYTHON,
        out=lambda w, output: os.path.dirname(output.student),
        settings=json.dumps(EXPORT_SETTINGS),  # not the training ones: they do not change the base student
        cache=os.path.join(config["cache_dir"], "students"),
    shell:
        "{params.python} -m polyfuse.cli export-base --out {params.out} --settings {params.settings:q}"
        " --threads {threads} --cache {params.cache} --log {log}"
