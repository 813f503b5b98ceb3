from polyfuse.steps import sample

sample(snakemake)  # noqa: F821 - snakemake is injected by the script directive
