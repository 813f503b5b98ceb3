from polyfuse.steps import derive_pool

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    derive_pool(snakemake)  # noqa: F821 - snakemake is injected by the script directive
