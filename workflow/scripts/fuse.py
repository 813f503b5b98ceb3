from polyfuse.steps import fusion

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    fusion(snakemake)  # noqa: F821 - snakemake is injected by the script directive
