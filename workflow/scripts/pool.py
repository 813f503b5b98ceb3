from polyfuse.steps import pool

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    pool(snakemake)  # noqa: F821 - snakemake is injected by the script directive
