from polyfuse.steps import target_scores

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    target_scores(snakemake)  # noqa: F821 - snakemake is injected by the script directive
