"""Any OpenAI-compatible server: `vllm serve`, SGLang, llama.cpp's server, hosted APIs.

Requests run concurrently (``concurrency``) and are spread over one or several endpoints
(``base_url`` or ``base_urls``), so per-language jobs can share long-lived servers. A 429,
a 5xx, a timeout or a refused connection is retried with exponential backoff and full
jitter; after the last try the error names the endpoint and the model. The API key is read
from the environment variable named by ``api_key_env`` and never logged or recorded.
Servers differ in how they treat ``n`` (llama.cpp's returns one choice whatever ``n`` is),
so n samples are always n requests with seeds seed, seed+1, ...
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

from polyfuse.engines import Engine, Generation, GenerationRequest, Prompt, register_engine
from polyfuse.errors import PolyfuseError

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class RetryableError(Exception):
    pass


@register_engine("openai")
class OpenAIEngine(Engine):
    def __init__(self, model_name: str, spec: dict, threads: int = 1):
        super().__init__(model_name, spec, threads)
        import httpx

        urls = spec.get("base_urls") or [spec.get("base_url")]
        if not all(urls):
            raise PolyfuseError(f"model {model_name!r}: the openai engine needs 'base_url' or 'base_urls'")
        self.base_urls = [url.rstrip("/") for url in urls]
        self.served_model = spec.get("model", model_name)
        self.concurrency = int(spec.get("concurrency", 8))
        self.batch_items = self.concurrency
        self.max_retries = int(spec.get("max_retries", 6))
        self.backoff = float(spec.get("backoff_seconds", 1.0))
        self.backoff_cap = float(spec.get("backoff_max_seconds", 60.0))
        key_env = spec.get("api_key_env", "OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {os.environ[key_env]}"} if os.environ.get(key_env) else {}
        self.client = httpx.Client(headers=headers, timeout=float(spec.get("timeout_seconds", 300)))
        self._next_url = itertools.cycle(self.base_urls)
        self._lock = threading.Lock()

    def identity(self) -> dict:
        # The endpoint is not part of it: the same weights behind another URL give the same outputs.
        return {"engine": self.engine_name, "model": self.served_model, "revision": self.spec.get("revision")}

    def _post(self, path: str, body: dict) -> dict:
        import httpx

        with self._lock:
            url = f"{next(self._next_url)}{path}"
            self.calls += 1
        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.post(url, json=body)
                if response.status_code in RETRY_STATUS:
                    retry_after = response.headers.get("retry-after")
                    raise RetryableError(f"HTTP {response.status_code}", float(retry_after) if retry_after else None)
                if response.status_code >= 400:
                    raise PolyfuseError(f"{url} (model {self.served_model}): HTTP {response.status_code}: "
                                        f"{response.text[:200]!r}")
                return response.json()
            except (httpx.TransportError, RetryableError) as exc:
                last = str(exc.args[0]) if exc.args else type(exc).__name__
                if attempt == self.max_retries:
                    break
                hinted = exc.args[1] if isinstance(exc, RetryableError) and len(exc.args) > 1 else None
                delay = hinted or random.uniform(0, min(self.backoff_cap, self.backoff * 2**attempt))
                log.warning("%s: %s; retry %d/%d in %.1fs", url, last, attempt + 1, self.max_retries, delay)
                time.sleep(delay)
        raise PolyfuseError(f"{url} (model {self.served_model}) failed after {self.max_retries + 1} attempts: {last}")

    def _complete_one(self, prompt: Prompt, params, seed: int) -> tuple[str, int, int, str]:
        body = {"model": self.served_model, "max_tokens": params.max_tokens, "temperature": params.temperature,
                "top_p": params.top_p, "seed": seed, "n": 1}
        if params.stop:
            body["stop"] = list(params.stop)
        if isinstance(prompt, str):
            data = self._post("/v1/completions", {**body, "prompt": prompt})
            text = data["choices"][0]["text"]
        else:
            data = self._post("/v1/chat/completions", {**body, "messages": prompt})
            text = data["choices"][0]["message"]["content"] or ""
        usage = data.get("usage") or {}
        return text, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), data["choices"][0].get("finish_reason") or "stop"

    def _generate_one(self, request: GenerationRequest) -> Generation:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=min(self.concurrency, request.n)) as pool:
            results = list(pool.map(lambda k: self._complete_one(request.prompt, request.params, request.seed + k),
                                    range(request.n)))
        return Generation([r[0] for r in results], results[0][1], [r[2] for r in results],
                          time.perf_counter() - start, [r[3] for r in results])

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Generation]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            yield from pool.map(self._generate_one, requests)

    def loglik(self, prompt: Prompt, continuations: Sequence[str]) -> list[float]:
        """Prompt log-probabilities through the completions endpoint (echo + logprobs), as vLLM serves them."""
        if not isinstance(prompt, str):
            raise PolyfuseError(f"model {self.model_name!r}: loglik over the openai engine needs prompt_style: fewshot")
        scores = []
        for continuation in continuations:
            data = self._post("/v1/completions", {"model": self.served_model, "prompt": prompt + continuation,
                                                  "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0.0})
            logprobs = data["choices"][0].get("logprobs") or {}
            offsets, values = logprobs.get("text_offset"), logprobs.get("token_logprobs")
            if not offsets or not values:
                raise PolyfuseError(f"{self.base_urls[0]} (model {self.served_model}) returned no prompt logprobs")
            end = len(prompt) + len(continuation)  # tokens past it were generated, not scored
            picked = [v for o, v in zip(offsets, values) if len(prompt) <= o < end and v is not None]
            scores.append(sum(picked) / len(picked) if picked else float("-inf"))
        return scores

    def close(self) -> None:
        self.client.close()
