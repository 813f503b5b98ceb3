from polyfuse.steps import score_outputs

score_outputs(snakemake)  # noqa: F821 - snakemake is injected by the script directive
