# The paper's analyses: derived pools (subsets, injections, orders) go through the ordinary select, fuse, score
# and judge rules as samplers named <sampler>~<variant>; each analysis rule then writes a table and a figure.


rule derive_pool:
    input:
        items_file="results/{task}/{lang}/items.jsonl",
        pools="results/{task}/{lang}/pools/{sampler}.jsonl",
    output:
        pools="results/{task}/{lang}/pools/{sampler}~{variant}.jsonl",
    log:
        "results/logs/derive_pool/{task}/{lang}/{sampler}~{variant}.log",
    benchmark:
        "results/benchmarks/derive_pool/{task}/{lang}/{sampler}~{variant}.tsv"
    wildcard_constraints:
        sampler=alternatives([*MODELS, *POOLS]),
        variant=alternatives(VARIANTS),
    conda:
        "../../envs/llamacpp.yaml"
    resources:
        slurm_partition=slurm_partition(gpus=0),
    params:
        kind=lambda w: TASKS[w.task]["kind"],
        seed=STUDY["seed"],
    script:
        "../scripts/derive_pool.py"


rule nscaling:
    input:
        scores=analysis_files("scores", ["subset"]),
        pools=analysis_pools(),
        fusions=analysis_files("outputs", ["subset"]),
    output:
        **analysis_report_outputs("nscaling", "N-scaling"),
    log:
        "results/logs/analyses/nscaling.log",
    benchmark:
        "results/benchmarks/analyses/nscaling.tsv"
    conda:
        "../../envs/report.yaml"
    resources:
        slurm_partition=slurm_partition(gpus=0),
    params:
        settings=ANALYSIS_SETTINGS,
    script:
        "../scripts/analysis.py"


use rule nscaling as robustness with:
    input:
        scores=analysis_files("scores", ["injection"]),
        fusions=analysis_files("outputs", ["injection"]),
    output:
        **analysis_report_outputs("robustness", "Robustness"),
    log:
        "results/logs/analyses/robustness.log",
    benchmark:
        "results/benchmarks/analyses/robustness.tsv"


use rule nscaling as position with:
    input:
        scores=analysis_files("scores", ["order"]),
        fusions=analysis_files("outputs", ["order"]),
        pools=analysis_pools(["order"]),
    output:
        **analysis_report_outputs("position", "Position bias"),
    log:
        "results/logs/analyses/position.log",
    benchmark:
        "results/benchmarks/analyses/position.tsv"


use rule nscaling as diagnostics with:
    input:
        scores=analysis_files("scores"),
        fusions=analysis_files("outputs"),
        pools=analysis_pools(),
    output:
        **analysis_report_outputs("diagnostics", "Fusion diagnostics"),
    log:
        "results/logs/analyses/diagnostics.log",
    benchmark:
        "results/benchmarks/analyses/diagnostics.tsv"


use rule nscaling as compute with:
    input:
        scores=analysis_files("scores", ["subset"]),
        pools=analysis_pools(["subset"]),
        fusions=analysis_files("outputs", ["subset"]),
    output:
        **analysis_report_outputs("compute", "Compute-matched"),
    log:
        "results/logs/analyses/compute.log",
    benchmark:
        "results/benchmarks/analyses/compute.tsv"


use rule nscaling as fusors with:
    input:
        scores=fusor_choice_files("scores"),
        fusions=fusor_choice_files("outputs", ["fusion"]),
    output:
        **analysis_report_outputs("fusors", "Fusor choice"),
    log:
        "results/logs/analyses/fusors.log",
    benchmark:
        "results/benchmarks/analyses/fusors.tsv"


# The method zoo: every selection and aggregation method beside BoN and FusioN on the same pools, per task.
if ZOO:

    use rule nscaling as zoo with:
        input:
            scores=zoo_files("scores"),
            records=zoo_files("outputs"),
        output:
            **zoo_report_outputs(),
        log:
            "results/logs/analyses/zoo.log",
        benchmark:
            "results/benchmarks/analyses/zoo.tsv"
        params:
            settings=ZOO_ANALYSIS_SETTINGS,


# Each claim of the paper beside this run's finding: reads the study's scores and the analyses' tables.
use rule nscaling as claims with:
    input:
        scores=score_files(".jsonl"),
        nscaling_scores=analysis_files("scores", ["subset"]) if ANALYSES and ANALYSES["sizes"] else [],
        pools=analysis_pools() if ANALYSES and ANALYSES["sizes"] else [],
        diagnostics=[path for path in analysis_outputs() if path.endswith("diagnostics.csv")],
        fusors=[path for path in analysis_outputs() if path.endswith("fusors.csv")],
        fusions=claim_fusions(),
    output:
        claims=report("results/README.md", caption="../report/claims.rst", category="Claims"),
    log:
        "results/logs/analyses/claims.log",
    benchmark:
        "results/benchmarks/analyses/claims.tsv"
