from polyfuse.steps import items

items(snakemake)  # noqa: F821 - snakemake is injected by the script directive
