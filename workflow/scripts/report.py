from polyfuse.steps import aggregate

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    aggregate(snakemake)  # noqa: F821 - snakemake is injected by the script directive
