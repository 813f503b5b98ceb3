from polyfuse.steps import sft_set

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    sft_set(snakemake)  # noqa: F821 - snakemake is injected by the script directive
