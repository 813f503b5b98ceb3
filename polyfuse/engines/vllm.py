"""vLLM offline batched generation (``LLM.generate``), in its own environment (envs/vllm.yaml).

All requests of a batch go to vLLM in one call, so it schedules them together; the N
candidates of a prompt share the prompt's KV cache through automatic prefix caching
(each candidate is its own seeded request, so it is cached and reproducible one by one).
``generation_config="vllm"`` keeps a model's shipped sampling defaults out of the results.

Prompts go to vLLM as token ids, tokenized here as vLLM's own ``LLM.chat`` does: a raw prompt
with the tokenizer's special tokens, a rendered chat template without (it wrote its own BOS).
So the context check (prompt + ``max_tokens`` within ``max_model_len``, else an error) counts
exactly what runs, and log-likelihoods score each continuation's own tokens after the prompt's.
The cache identity hashes the weights, the config and the tokenizer files (chat template included).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from polyfuse.engines import Engine, Generation, GenerationRequest, Prompt, register_engine
from polyfuse.engines.spec import VllmModel
from polyfuse.errors import PolyfuseError
from polyfuse.io import file_hash

# On CPU, one process is enough and needs no spawn-safe re-import of the caller.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

# What determines a model's outputs besides its weights: config, tokenizer and chat template files.
CONFIG_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
# The weight formats vLLM loads, in its order of preference: the first one present is what it reads.
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")


def content_address(path: Path) -> str:
    """A file's content hash; a Hugging Face cache file is a link named by its blob's hash, so no read is needed."""
    if path.is_symlink() and path.resolve().parent.name == "blobs":
        return path.resolve().name[:16]
    return file_hash(path)


@register_engine("vllm")
class VLLMEngine(Engine):
    spec_model = VllmModel

    def __init__(self, model_name: str, spec: dict, threads: int = 1):
        super().__init__(model_name, spec, threads)
        self.model = spec["path"]
        self.batch_items = int(self.option("batch_items"))
        self._llm = None

    @property
    def llm(self):
        if self._llm is None:
            from vllm import LLM

            self._llm = LLM(
                model=self.model,
                revision=self.spec.get("revision"),
                tensor_parallel_size=int(self.option("tensor_parallel_size")),
                gpu_memory_utilization=float(self.option("gpu_memory_utilization")),
                max_model_len=self.option("max_model_len"),
                dtype=self.option("dtype"),
                enforce_eager=bool(self.option("enforce_eager")),
                generation_config="vllm",
                enable_prefix_caching=True,
                seed=0,
            )
        return self._llm

    @property
    def max_model_len(self) -> int:
        return int(self.llm.model_config.max_model_len)

    def _model_dir(self) -> Path:
        local = Path(self.model).expanduser()
        if local.is_dir():
            return local
        from huggingface_hub import snapshot_download

        # The same hub cache vLLM loads from, so the identity hashes the files that run.
        return Path(
            snapshot_download(
                self.model, revision=self.spec.get("revision"), allow_patterns=[*CONFIG_FILES, *WEIGHT_PATTERNS]
            )
        )

    @functools.cached_property
    def _identity(self) -> dict:
        directory = self._model_dir()
        weights = next((found for pattern in WEIGHT_PATTERNS if (found := sorted(directory.glob(pattern)))), [])
        if not weights:
            raise PolyfuseError(f"model {self.model_name!r}: no weights ({', '.join(WEIGHT_PATTERNS)}) in {directory}")
        files = [directory / name for name in CONFIG_FILES if (directory / name).is_file()] + weights
        return {
            "engine": self.engine_name,
            "model": directory.name if Path(self.model).expanduser().is_dir() else self.model,
            "revision": self.spec.get("revision"),
            "dtype": self.option("dtype"),
            "files": {path.name: content_address(path) for path in files},
        }

    def identity(self) -> dict:
        return self._identity  # hashing the weights once per job, not once per batch

    def prompt_token_ids(self, prompt: Prompt) -> list[int]:
        tokenizer = self.llm.get_tokenizer()
        if isinstance(prompt, str):
            return tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if not tokenizer.chat_template:
            raise PolyfuseError(f"model {self.model_name!r} has no chat template; set prompt_style: fewshot")
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]  # the template wrote the special tokens

    def _sampling(self, request: GenerationRequest):
        from vllm import SamplingParams

        params = request.params
        return SamplingParams(
            n=request.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            seed=request.seed,
            stop=list(params.stop) or None,
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Generation]:
        from vllm.inputs import TokensPrompt

        prompts = [self.prompt_token_ids(request.prompt) for request in requests]
        context = self.max_model_len
        # Every request is checked before any is generated: vLLM would stop at the context with "length".
        for request, token_ids in zip(requests, prompts, strict=True):
            self.require_room(len(token_ids), request.params.max_tokens, context, "max_model_len")
        start = time.perf_counter()
        results = self.llm.generate(
            [TokensPrompt(prompt_token_ids=token_ids) for token_ids in prompts],
            [self._sampling(request) for request in requests],
            use_tqdm=False,
        )
        self.calls += sum(request.n for request in requests)
        # One batched call: its time is shared out over the requests by their output tokens.
        elapsed = time.perf_counter() - start
        total_tokens = sum(len(c.token_ids) for out in results for c in out.outputs) or 1
        for out in results:
            tokens = [len(c.token_ids) for c in out.outputs]
            yield Generation(
                [c.text for c in out.outputs],
                len(out.prompt_token_ids),
                tokens,
                elapsed * sum(tokens) / total_tokens,
                [c.finish_reason or "stop" for c in out.outputs],
            )

    def loglik_terms(self, prompt: Prompt, continuations: Sequence[str]) -> list[tuple[float, int]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        tokenizer = self.llm.get_tokenizer()
        context = self.prompt_token_ids(prompt)
        # Tokenized apart from the prompt, as generated: text tokenized whole could merge across the boundary.
        encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in continuations]
        self.require_room(
            len(context),
            max(map(len, encoded), default=0),
            self.max_model_len,
            "max_model_len",
            added="continuation_tokens",
        )
        scored = [i for i, tokens in enumerate(encoded) if tokens]
        results = self.llm.generate(
            [TokensPrompt(prompt_token_ids=context + encoded[i]) for i in scored],
            SamplingParams(max_tokens=1, prompt_logprobs=0),
            use_tqdm=False,
        )
        self.calls += len(scored)
        self.loglik_reads = [len(context) + len(tokens) if tokens else 0 for tokens in encoded]  # each whole
        self.loglik_tokens += sum(self.loglik_reads)
        terms = [(0.0, 0)] * len(continuations)
        for i, out in zip(scored, results, strict=True):
            # prompt_logprobs[p] holds the log-probability of prompt token p given the tokens before it
            entries = out.prompt_logprobs[len(context) :]
            terms[i] = (
                sum(entry[token].logprob for token, entry in zip(encoded[i], entries, strict=True)),
                len(encoded[i]),
            )
        return terms
