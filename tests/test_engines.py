"""The llama.cpp engine with both embedded models, for real."""

import pytest

from polyfuse.engines import GenerationRequest, SamplingParams, create_engine
from polyfuse.errors import PolyfuseError

PARAMS = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=24, stop=("\n",))
FEWSHOT = "English: Good morning.\nGerman: Guten Morgen.\n\nEnglish: The museum is closed on Mondays.\nGerman:"


def test_fewshot_generation_is_seeded(gemma):
    first, again, other = gemma.generate([GenerationRequest(FEWSHOT, PARAMS, seed=s) for s in (7, 7, 8)])
    assert first.texts == again.texts
    assert first.texts[0].strip() and "\n" not in first.texts[0]
    assert first.tokens_in > 10 and 0 < first.tokens_out[0] <= 24 and first.seconds > 0
    assert first.finish_reasons[0] in ("stop", "length")
    assert other.texts != first.texts or other.tokens_out != first.tokens_out


def test_chat_generation_uses_the_model_template_and_counts_n(smol):
    messages = [{"role": "user", "content": "Name a colour."}]
    calls = smol.calls
    (generation,) = smol.generate([GenerationRequest(messages, PARAMS, seed=1, n=3)])
    assert len(generation.texts) == 3 and len(generation.tokens_out) == 3
    assert smol.calls == calls + 3
    assert "<|im_start|>user\nName a colour.<|im_end|>" in smol.render(messages)


def test_identity_pins_the_weights(gemma, smol):
    assert gemma.identity()["gguf"] == "gemma-3-270m-q4_k_m.gguf"
    assert gemma.identity()["sha256"] != smol.identity()["sha256"]


def test_unknown_engine_and_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(PolyfuseError, match="model .x.: unknown engine .tgi.; known: llamacpp, openai, vllm"):
        create_engine("x", {"engine": "tgi"})
    with pytest.raises(PolyfuseError, match="model 'y': GGUF file not found: .*nope.gguf"):
        create_engine("y", {"engine": "llamacpp", "path": str(tmp_path / "nope.gguf")})
    with pytest.raises(PolyfuseError, match="package 'not_a_model_pkg' is not installed"):
        create_engine("z", {"engine": "llamacpp", "package": "not_a_model_pkg"})
