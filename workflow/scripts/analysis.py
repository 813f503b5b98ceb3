from polyfuse.steps import analysis

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    analysis(snakemake)  # noqa: F821 - snakemake is injected by the script directive
