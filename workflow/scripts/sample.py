from polyfuse.steps import sample

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    sample(snakemake)  # noqa: F821 - snakemake is injected by the script directive
