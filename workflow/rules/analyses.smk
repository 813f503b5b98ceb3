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
        table=report(
            "results/analyses/nscaling.csv",
            caption="../report/nscaling.rst",
            category="Analyses",
            subcategory="N-scaling",
        ),
        markdown="results/analyses/nscaling.md",
        figure=report(
            "results/analyses/nscaling.png",
            caption="../report/nscaling.rst",
            category="Analyses",
            subcategory="N-scaling",
        ),
        pdf="results/analyses/nscaling.pdf",
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
        table=report(
            "results/analyses/robustness.csv",
            caption="../report/robustness.rst",
            category="Analyses",
            subcategory="Robustness",
        ),
        markdown="results/analyses/robustness.md",
        figure=report(
            "results/analyses/robustness.png",
            caption="../report/robustness.rst",
            category="Analyses",
            subcategory="Robustness",
        ),
        pdf="results/analyses/robustness.pdf",
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
        table=report(
            "results/analyses/position.csv",
            caption="../report/position.rst",
            category="Analyses",
            subcategory="Position bias",
        ),
        markdown="results/analyses/position.md",
        figure=report(
            "results/analyses/position.png",
            caption="../report/position.rst",
            category="Analyses",
            subcategory="Position bias",
        ),
        pdf="results/analyses/position.pdf",
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
        table=report(
            "results/analyses/diagnostics.csv",
            caption="../report/diagnostics.rst",
            category="Analyses",
            subcategory="Fusion diagnostics",
        ),
        markdown="results/analyses/diagnostics.md",
        figure=report(
            "results/analyses/diagnostics.png",
            caption="../report/diagnostics.rst",
            category="Analyses",
            subcategory="Fusion diagnostics",
        ),
        pdf="results/analyses/diagnostics.pdf",
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
        table=report(
            "results/analyses/compute.csv",
            caption="../report/compute.rst",
            category="Analyses",
            subcategory="Compute-matched",
        ),
        markdown="results/analyses/compute.md",
        figure=report(
            "results/analyses/compute.png",
            caption="../report/compute.rst",
            category="Analyses",
            subcategory="Compute-matched",
        ),
        pdf="results/analyses/compute.pdf",
    log:
        "results/logs/analyses/compute.log",
    benchmark:
        "results/benchmarks/analyses/compute.tsv"


use rule nscaling as fusors with:
    input:
        scores=fusor_choice_files("scores"),
        fusions=fusor_choice_files("outputs", ["fusion"]),
    output:
        table=report(
            "results/analyses/fusors.csv",
            caption="../report/fusors.rst",
            category="Analyses",
            subcategory="Fusor choice",
        ),
        markdown="results/analyses/fusors.md",
        figure=report(
            "results/analyses/fusors.png",
            caption="../report/fusors.rst",
            category="Analyses",
            subcategory="Fusor choice",
        ),
        pdf="results/analyses/fusors.pdf",
    log:
        "results/logs/analyses/fusors.log",
    benchmark:
        "results/benchmarks/analyses/fusors.tsv"


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
