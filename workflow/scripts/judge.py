from polyfuse.steps import judge

if __name__ == "__main__":  # spawn-safe: vLLM workers re-import the main module
    judge(snakemake)  # noqa: F821 - snakemake is injected by the script directive
