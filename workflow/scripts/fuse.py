from polyfuse.steps import fusion

fusion(snakemake)  # noqa: F821 - snakemake is injected by the script directive
