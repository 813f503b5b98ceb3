from polyfuse.steps import reference

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    reference(snakemake)  # noqa: F821 - snakemake is injected by the script directive
