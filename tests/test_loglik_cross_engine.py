"""The same SmolLM2 weights score the same prompts and continuations alike through every engine.

llama.cpp runs the Q4_1 GGUF in process; vLLM (its own environment, in a subprocess) runs the same
weights dequantized to float32 by transformers; llama.cpp's OpenAI-compatible server scores through
the openai engine's echo path (raw prompts only), which is a strict xfail: that server's echoed
log-probabilities are shifted by one token. The weights agree, the arithmetic does not:
llama.cpp multiplies quantized blocks with 8-bit activations. So the per-continuation mean
log-probabilities must agree within TOLERANCE nats, and rank the continuations alike.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from polyfuse.engines import create_engine
from tests.helpers.llama_server import LlamaServer
from tests.helpers.vllm_env import VLLM_ENV, vllm_python

TOLERANCE = 0.1  # nats, on a continuation's mean token log-probability (Q4_1 arithmetic vs float32)

FEWSHOT = "English: Good morning.\nGerman: Guten Morgen.\n\nEnglish: The museum is closed on Mondays.\nGerman:"
CHAT = [{"role": "user", "content": "Translate into German: The museum is closed on Mondays."}]
CASES = {
    "fewshot": (
        FEWSHOT,
        [
            " Das Museum ist montags geschlossen.",
            "Das Museum ist montags geschlossen.",
            " Museum Montag zu.",
            " xq zzv plomf",
        ],
    ),
    "chat": (CHAT, ["Das Museum ist montags geschlossen.", "Museum Montag zu.", "xq zzv plomf"]),
}

VLLM_SCRIPT = """
import json, sys
from polyfuse.engines import GenerationRequest, SamplingParams, create_engine
from polyfuse.errors import PolyfuseError
cases = json.loads(sys.argv[2])
engine = create_engine("smolv", {"engine": "vllm", "path": sys.argv[1], "dtype": "float32",
                                 "gpu_memory_utilization": 0.3, "max_model_len": 256, "enforce_eager": True})
result = {}
for name, (prompt, continuations) in cases.items():
    result[name] = engine.loglik(prompt, continuations)
    result[name + "_reads"] = engine.loglik_reads
prompt = cases["fewshot"][0]
overflowing = GenerationRequest(prompt, SamplingParams(max_tokens=250), seed=1)
for label, attempt in (("generate", lambda: list(engine.generate([overflowing]))),
                       ("loglik", lambda: engine.loglik(prompt, [" Das Museum." * 80]))):
    try:
        attempt()
        result[label + "_error"] = None
    except PolyfuseError as exc:
        result[label + "_error"] = str(exc)
result["calls"] = engine.calls
print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def vllm_scores(smol_hf):
    run = subprocess.run(
        [str(vllm_python()), "-c", VLLM_SCRIPT, str(smol_hf), json.dumps(CASES)],
        capture_output=True,
        text=True,
        env=VLLM_ENV,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    (line,) = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


@pytest.fixture(scope="module")
def server_engine():
    """llama.cpp's OpenAI-compatible server with SmolLM2, keeping logits so it can echo prompt log-probabilities."""
    server = LlamaServer(n_ctx=1024, logits_all=True)
    server.start()
    engine = create_engine(
        "smols",
        {"engine": "openai", "base_url": server.url, "model": "smol", "prompt_style": "fewshot", "concurrency": 1},
    )
    yield engine
    engine.close()
    server.stop()


def assert_agree(ours: list[float], theirs: list[float]) -> None:
    assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < TOLERANCE, (ours, theirs)
    assert sorted(range(len(ours)), key=ours.__getitem__) == sorted(range(len(theirs)), key=theirs.__getitem__)


@pytest.mark.parametrize("case", sorted(CASES))
def test_llamacpp_and_vllm_agree(smol, vllm_scores, case):
    prompt, continuations = CASES[case]
    assert_agree(smol.loglik(prompt, continuations), vllm_scores[case])


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_engine_reports_the_tokens_each_continuation_read(smol, vllm_scores, case):
    # llama.cpp reads the prompt once, then its last token and the continuation; vLLM reads each sequence whole.
    # Either way a continuation's own tokens differ from the other engine's by the same prompt length.
    prompt, continuations = CASES[case]
    smol.loglik(prompt, continuations)
    gaps = {theirs - ours for ours, theirs in zip(smol.loglik_reads, vllm_scores[case + "_reads"], strict=True)}
    assert len(gaps) == 1 and gaps.pop() > 0 and min(smol.loglik_reads) >= 2


@pytest.mark.xfail(
    strict=True,
    reason="llama-cpp-python's server gives echoed token i the log-probability from the "
    "logits that predict token i+1 (llama_cpp/llama.py, echo logprobs), so it offers no usable echo path",
)
def test_llamacpp_and_its_server_echo_path_agree(smol, server_engine):
    prompt, continuations = CASES["fewshot"]
    assert_agree(smol.loglik(prompt, continuations), server_engine.loglik(prompt, continuations))


def test_vllm_overflowing_the_context_is_an_error_before_running(vllm_scores):
    assert vllm_scores["generate_error"].startswith("model 'smolv': a ")
    assert (
        "plus max_tokens=250 does not fit its 256-token context; raise models.smolv.max_model_len"
        in vllm_scores["generate_error"]
    )
    assert "continuation_tokens=" in vllm_scores["loglik_error"] and "max_model_len" in vllm_scores["loglik_error"]
    assert vllm_scores["calls"] == len(CASES["fewshot"][1]) + len(CASES["chat"][1])  # neither overflow ran
