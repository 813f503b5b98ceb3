from polyfuse.steps import items

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    items(snakemake)  # noqa: F821 - snakemake is injected by the script directive
