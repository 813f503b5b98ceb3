"""vLLM offline batched generation (``LLM.generate`` / ``LLM.chat``), in its own environment (envs/vllm.yaml).

All requests of a batch go to vLLM in one call, so it schedules them together; the N
candidates of a prompt share the prompt's KV cache through automatic prefix caching
(each candidate is its own seeded request, so it is cached and reproducible one by one).
``generation_config="vllm"`` keeps a model's shipped sampling defaults out of the results.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator, Sequence

from polyfuse.engines import Engine, Generation, GenerationRequest, Prompt, register_engine
from polyfuse.io import content_hash

# On CPU, one process is enough and needs no spawn-safe re-import of the caller.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


@register_engine("vllm")
class VLLMEngine(Engine):
    def __init__(self, model_name: str, spec: dict, threads: int = 1):
        super().__init__(model_name, spec, threads)
        self.model = spec["path"]
        self.batch_items = int(spec.get("batch_items", 256))
        self._llm = None

    @property
    def llm(self):
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(
                model=self.model,
                revision=self.spec.get("revision"),
                tensor_parallel_size=int(self.spec.get("tensor_parallel_size", 1)),
                gpu_memory_utilization=float(self.spec.get("gpu_memory_utilization", 0.9)),
                max_model_len=self.spec.get("max_model_len"),
                dtype=self.spec.get("dtype", "auto"),
                generation_config="vllm",
                enable_prefix_caching=True,
                seed=0,
            )
        return self._llm

    def identity(self) -> dict:
        config = Path(self.model) / "config.json"
        return {
            "engine": self.engine_name,
            "model": Path(self.model).name if config.is_file() else self.model,
            "revision": self.spec.get("revision"),
            "config": content_hash(json.loads(config.read_text())) if config.is_file() else None,
        }

    def _sampling(self, request: GenerationRequest):
        from vllm import SamplingParams

        params = request.params
        return SamplingParams(n=request.n, temperature=params.temperature, top_p=params.top_p,
                              max_tokens=params.max_tokens, seed=request.seed, stop=list(params.stop) or None)

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Generation]:
        chat = [i for i, r in enumerate(requests) if not isinstance(r.prompt, str)]
        raw = [i for i, r in enumerate(requests) if isinstance(r.prompt, str)]
        outputs: dict[int, object] = {}
        start = time.perf_counter()
        if chat:
            results = self.llm.chat([requests[i].prompt for i in chat], [self._sampling(requests[i]) for i in chat],
                                    use_tqdm=False)
            outputs.update(zip(chat, results))
        if raw:
            results = self.llm.generate([requests[i].prompt for i in raw], [self._sampling(requests[i]) for i in raw],
                                        use_tqdm=False)
            outputs.update(zip(raw, results))
        self.calls += sum(r.n for r in requests)
        # One batched call: its time is shared out over the requests by their output tokens.
        elapsed = time.perf_counter() - start
        total_tokens = sum(len(c.token_ids) for out in outputs.values() for c in out.outputs) or 1
        for i in range(len(requests)):
            out = outputs[i]
            tokens = [len(c.token_ids) for c in out.outputs]
            yield Generation([c.text for c in out.outputs], len(out.prompt_token_ids), tokens,
                             elapsed * sum(tokens) / total_tokens, [c.finish_reason or "stop" for c in out.outputs])

    def loglik(self, prompt: Prompt, continuations: Sequence[str]) -> list[float]:
        from vllm import SamplingParams

        tokenizer = self.llm.get_tokenizer()
        text = prompt if isinstance(prompt, str) else tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True)
        prefix = len(tokenizer(text, add_special_tokens=True)["input_ids"])
        results = self.llm.generate([text + c for c in continuations], SamplingParams(max_tokens=1, prompt_logprobs=0),
                                    use_tqdm=False)
        self.calls += len(continuations)
        scores = []
        for out in results:
            picked = [entry[token].logprob for token, entry in zip(out.prompt_token_ids[prefix:], out.prompt_logprobs[prefix:])]
            scores.append(sum(picked) / len(picked) if picked else float("-inf"))
        return scores
