from polyfuse.steps import score_outputs

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    score_outputs(snakemake)  # noqa: F821 - snakemake is injected by the script directive
