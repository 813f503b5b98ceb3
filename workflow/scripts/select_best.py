from polyfuse.steps import select

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    select(snakemake)  # noqa: F821 - snakemake is injected by the script directive
