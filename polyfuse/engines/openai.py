"""Any OpenAI-compatible server: `vllm serve`, SGLang, llama.cpp's server, hosted APIs, through the `openai` SDK.

Base URLs: one with a path names its API root and is used as is (``https://api.example.com/v1``, Gemini's
``https://generativelanguage.googleapis.com/v1beta/openai/``); a bare host (``http://host:8000``) gets ``/v1``.
Requests go to ``<root>/chat/completions`` (chat prompts) and ``<root>/completions`` (raw prompts, loglik).

At most ``concurrency`` requests are in flight, spread round-robin over one or several endpoints
(``base_url`` or ``base_urls``), so per-language jobs can share long-lived servers. A 408, 409, 425,
429 or any 5xx, a timeout or a failed connection is retried up to ``max_retries`` times with
exponential backoff and full jitter; a ``Retry-After`` header (seconds or an HTTP date) sets the wait
instead, capped at ``backoff_max_seconds``. Other statuses fail at once. Every failure is one
PolyfuseError line naming the endpoint and the served model. The API key is read from the environment
variable named by ``api_key_env`` and never logged, recorded or shown in an error.

A response without choices is an error; a choice whose text is empty or null is an empty answer (a
model may legally say nothing, e.g. under a content filter; its finish_reason is kept).
Servers differ in how they treat ``n`` (llama.cpp's returns one choice whatever ``n`` is), so n samples
are always n requests with seeds seed, seed+1, ...
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import math
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from typing import NamedTuple
from urllib.parse import urlsplit

from polyfuse.engines import Engine, Generation, GenerationRequest, Prompt, SamplingParams, register_engine
from polyfuse.engines.spec import OpenAIModel
from polyfuse.errors import PolyfuseError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 425, 429})  # and every 5xx
CHAT, COMPLETIONS = "chat/completions", "completions"
NO_KEY = "EMPTY"  # the SDK refuses to run without a key; keyless servers ignore this placeholder


def api_root(model_name: str, url: str) -> str:
    """The root the SDK appends endpoint paths to: a URL with a path as is, a bare host plus `/v1`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PolyfuseError(f"model {model_name!r}: base URL {url!r} is not an http(s) URL")
    return url.rstrip("/") + ("" if parts.path.strip("/") else "/v1") + "/"


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (delay-seconds or an HTTP date) as seconds from now; None if absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        # a date without a zone ("-0000") comes back naive; HTTP dates are GMT
        seconds = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() - time.time()
    return None if math.isnan(seconds) else max(0.0, seconds)


class Sample(NamedTuple):
    text: str
    tokens_in: int
    tokens_out: int
    finish_reason: str
    seconds: float


@register_engine("openai")
class OpenAIEngine(Engine):
    spec_model = OpenAIModel

    def __init__(self, model_name: str, spec: dict, threads: int = 1):
        super().__init__(model_name, spec, threads)
        import openai

        urls = spec.get("base_urls") or [spec.get("base_url")]
        if not all(urls):
            raise PolyfuseError(f"model {model_name!r}: the openai engine needs 'base_url' or 'base_urls'")
        self.served_model = spec.get("model", model_name)
        self.concurrency = int(self.option("concurrency"))
        self.batch_items = self.concurrency
        self.max_retries = int(self.option("max_retries"))
        self.backoff = float(self.option("backoff_seconds"))
        self.backoff_cap = float(self.option("backoff_max_seconds"))
        # An explicit key always: left None, the SDK would send $OPENAI_API_KEY to whatever host this is.
        self._api_key = os.environ.get(self.option("api_key_env")) or None
        timeout = float(self.option("timeout_seconds"))
        # The SDK's own retries are off: its backoff is fixed (0.5-8 s) and it gives up on a Retry-After over
        # 2 minutes instead of waiting the configured cap, so the loop in _call applies the policy above.
        self.clients = [
            openai.OpenAI(
                base_url=api_root(model_name, url), api_key=self._api_key or NO_KEY, timeout=timeout, max_retries=0
            )
            for url in urls
        ]
        self._next_client = itertools.cycle(self.clients)
        self._lock = threading.Lock()

    def identity(self) -> dict:
        # The endpoint is not part of it: the same weights behind another URL give the same outputs.
        return {"engine": self.engine_name, "model": self.served_model, "revision": self.spec.get("revision")}

    def _redact(self, text: str) -> str:
        """`text` without the API key, should a server or proxy echo it back."""
        return text.replace(self._api_key, "<api key>") if self._api_key else text

    def _call(self, endpoint: str, body: dict):
        """One request to `endpoint` (CHAT or COMPLETIONS) under the retry policy.

        Returns (endpoint and model for messages, first choice, usage).
        """
        import openai

        with self._lock:
            client = next(self._next_client)
            self.calls += 1
        url = f"{client.base_url}{endpoint}"
        create = client.chat.completions.create if endpoint == CHAT else client.completions.create
        where = f"{url} (model {self.served_model})"
        for attempt in range(self.max_retries + 1):
            try:
                response = create(**body)
                break
            except openai.APIStatusError as exc:
                if exc.status_code < 500 and exc.status_code not in RETRY_STATUSES:
                    # from None: the SDK's own message repeats the unredacted response body
                    raise PolyfuseError(
                        f"{where}: HTTP {exc.status_code}: {self._redact(exc.response.text[:200])!r}"
                    ) from None
                failure = f"HTTP {exc.status_code}"
                hinted = retry_after_seconds(exc.response.headers.get("retry-after"))
            except openai.APIConnectionError as exc:  # refused, reset, DNS, and APITimeoutError
                failure, hinted = self._redact(f"{exc.message} {exc.__cause__ or ''}".strip()), None
            except openai.OpenAIError as exc:  # e.g. a body that is not JSON
                raise PolyfuseError(f"{where}: {type(exc).__name__}: {self._redact(str(exc))!r}") from None
            if attempt == self.max_retries:
                raise PolyfuseError(f"{where} failed after {self.max_retries + 1} attempts: {failure}")
            ceiling = min(self.backoff_cap, self.backoff * 2**attempt)
            delay = min(self.backoff_cap, hinted) if hinted is not None else random.uniform(0, ceiling)
            log.warning("%s: %s; retry %d/%d in %.1fs", where, failure, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
        choices = getattr(response, "choices", None)
        if not choices:
            raise PolyfuseError(f"{where} returned no choices")
        return where, choices[0], getattr(response, "usage", None)

    def _complete_one(self, prompt: Prompt, params: SamplingParams, seed: int) -> Sample:
        start = time.perf_counter()
        body = {
            "model": self.served_model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": seed,
            "n": 1,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if isinstance(prompt, str):
            where, choice, usage = self._call(COMPLETIONS, {**body, "prompt": prompt})
            text = choice.text
        else:
            where, choice, usage = self._call(CHAT, {**body, "messages": prompt})
            if choice.message is None:
                raise PolyfuseError(f"{where} returned a choice without a message")
            text = choice.message.content
        return Sample(
            text or "",
            getattr(usage, "prompt_tokens", 0) or 0,
            getattr(usage, "completion_tokens", 0) or 0,
            choice.finish_reason or "stop",
            time.perf_counter() - start,
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Generation]:
        # A thread pool over the SDK's thread-safe sync client: this is a plain in-order iterator whose
        # results are cached as they arrive, which an AsyncOpenAI event loop would only have to bridge back to.
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            samples = [
                [
                    pool.submit(self._complete_one, request.prompt, request.params, request.seed + k)
                    for k in range(request.n)
                ]
                for request in requests
            ]
            for futures in samples:
                done = [future.result() for future in futures]
                yield Generation(
                    [s.text for s in done],
                    done[0].tokens_in,
                    [s.tokens_out for s in done],
                    sum(s.seconds for s in done),
                    [s.finish_reason for s in done],
                )
        finally:
            pool.shutdown(cancel_futures=True)  # a failure or an abandoned iterator sends nothing more

    def _loglik_one(self, prompt: str, continuation: str) -> tuple[float, int]:
        """The continuation's mean log-probability, and the tokens the server read for it."""
        where, choice, usage = self._call(
            COMPLETIONS,
            {
                "model": self.served_model,
                "prompt": prompt + continuation,
                "max_tokens": 1,
                "echo": True,
                "logprobs": 1,
                "temperature": 0.0,
            },
        )
        offsets = getattr(choice.logprobs, "text_offset", None)
        values = getattr(choice.logprobs, "token_logprobs", None)
        if not offsets or not values:
            raise PolyfuseError(f"{where} returned no prompt logprobs (it needs echo)")
        if len(offsets) != len(values):
            raise PolyfuseError(f"{where} returned {len(offsets)} token offsets but {len(values)} logprobs")
        read = getattr(usage, "prompt_tokens", None) or len(offsets)  # the server's own count; else the echoed tokens
        with self._lock:
            self.loglik_tokens += read
        end = len(prompt) + len(continuation)  # tokens past it were generated, not scored
        picked = [v for o, v in zip(offsets, values, strict=True) if len(prompt) <= o < end and v is not None]
        return (sum(picked) / len(picked) if picked else float("-inf")), read

    def loglik(self, prompt: Prompt, continuations: Sequence[str]) -> list[float]:
        """Prompt log-probabilities through the completions endpoint (echo + logprobs), as vLLM serves them."""
        if not isinstance(prompt, str):
            raise PolyfuseError(f"model {self.model_name!r}: loglik over the openai engine needs prompt_style: fewshot")
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            scored = list(pool.map(lambda continuation: self._loglik_one(prompt, continuation), continuations))
        self.loglik_reads = [read for _, read in scored]
        return [value for value, _ in scored]

    def close(self) -> None:
        for client in self.clients:
            client.close()
