"""What transformers computes for a GGUF model, to hold an exported GGUF against in llama.cpp.

Usage: python hf_reference.py GGUF REQUEST_JSON -> prints JSON {"logprobs": [[per-token log-prob, ...], ...],
"greedy": [token id, ...]} for REQUEST_JSON = {"sequences": [[token id, ...], ...], "prompt": [token id, ...],
"max_new_tokens": int}. The log-prob of token i is given the tokens before it (i >= 1).
"""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM


def main(gguf: Path, request: dict) -> dict:
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    logprobs = []
    with torch.no_grad():
        for tokens in request["sequences"]:
            ids = torch.tensor([tokens])
            log_softmax = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
            logprobs.append(log_softmax.gather(1, ids[0, 1:, None])[:, 0].tolist())
        prompt = torch.tensor([request["prompt"]])
        greedy = model.generate(
            prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=request["max_new_tokens"]
        )
    return {"logprobs": logprobs, "greedy": greedy[0, prompt.shape[1] :].tolist()}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()))))
