from polyfuse.steps import aggregate

aggregate(snakemake)  # noqa: F821 - snakemake is injected by the script directive
