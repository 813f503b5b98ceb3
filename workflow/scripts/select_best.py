from polyfuse.steps import select

select(snakemake)  # noqa: F821 - snakemake is injected by the script directive
