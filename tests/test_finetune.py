"""Student fine-tuning (setting 2): training really moves the student, the GGUF export matches transformers, errors.

The model tests run `python -m polyfuse.cli finetune/export-base` in the train environment (.venv-train) on
SmolLM2-135M's GGUF and score the exports with llama.cpp here, as the students are evaluated.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from polyfuse.errors import PolyfuseError
from polyfuse.finetune import FinetuneSettings, read_sft_examples
from polyfuse.io import file_hash, read_jsonl, staged_directory, write_jsonl
from tests.helpers.train_env import REPO, run_train, smollm2_gguf

# Made-up vault passwords: targets the base model cannot already know, so any rise in their likelihood is training.
WORDS = ["zorblax", "quintaro", "mefistel", "plovnik", "trazzum", "gildroon", "vexapod", "snorquil"]
# transformers on the dequantized base vs llama.cpp on its F32 export: measured <= 0.0007 nats per token on the mean,
# 0.004 at most for one token (float summation order); a wrong Q/K permutation is off by 0.7-1.1 on the mean, 6 at most.
MEAN_LOGPROB_TOLERANCE = 0.01
TOKEN_LOGPROB_TOLERANCE = 0.05
REFERENCE_TEXTS = [
    "The capital of France is Paris, and the capital of Germany is Berlin.",
    "def add(a, b):\n    return a + b\n",
    "Once upon a time, a small fox lived at the edge of a quiet forest.",
]
GREEDY_PROMPT = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"


def sft_record(i: int, word: str) -> dict:
    return {
        "id": f"v{i}",
        "task": "vaults",
        "lang": "en",
        "set": "demo",
        "prompt": [{"role": "user", "content": f"What is the password of vault number {i}?"}],
        "completion": [{"role": "assistant", "content": f"The password of vault {i} is {word}-{i * 7}."}],
    }


def settings(**overrides) -> dict:
    # F32 exports: the agreement with transformers is held to float rounding, not to Q8_0's quantization.
    return {"base": {"gguf": str(smollm2_gguf())}, "gguf_type": "f32", **overrides}


def cli(step: str, *args: str, check: bool = True):
    return run_train("-m", "polyfuse.cli", step, *args, check=check)


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft") / "sft.jsonl"
    write_jsonl(path, (sft_record(i, word) for i, word in enumerate(WORDS)))
    return path


TRAIN = settings(epochs=3, learning_rate=0.002, batch_size=4, lora={"r": 8, "alpha": 16}, seed=3)


@pytest.fixture(scope="module")
def student_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("student-cache")


def finetune(sft_file, out, cache, train: dict):
    args = ("--inputs", str(sft_file), "--out", str(out), "--set", "demo", "--settings", json.dumps(train))
    return cli("finetune", *args, "--cache", str(cache), "--log", str(out.parent / f"{out.name}.log"))


@pytest.fixture(scope="module")
def student(tmp_path_factory, sft_file, student_cache, base_student):
    """Trained on the dequantized base that exporting base_student left in the student cache, as the workflow's
    fine-tuning jobs read the one the base student's job cached (the base is named the same either way: see
    test_the_base_is_named_by_its_gguf...)."""
    out = tmp_path_factory.mktemp("distill") / "student"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")  # Snakemake leaves the output directory in place
    finetune(sft_file, out, student_cache, TRAIN)
    return out


@pytest.fixture(scope="module")
def base_student(tmp_path_factory, student_cache):
    """The untrained base, dequantized from its GGUF into an empty student cache and exported."""
    out = tmp_path_factory.mktemp("distill") / "base"
    cli("export-base", "--out", str(out), "--settings", json.dumps(settings()), "--cache", str(student_cache))
    return out


def llama(path, **kwargs):
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=256, n_threads=2, verbose=False, **kwargs)


def mean_target_logprob(gguf, records) -> list[float]:
    """Each record's target: mean token log-prob under `gguf` given its prompt, through polyfuse's llama.cpp engine."""
    from polyfuse.engines import create_engine

    engine = create_engine("student", {"engine": "llamacpp", "path": str(gguf), "prompt_style": "chat"}, threads=2)
    try:
        terms = [engine.loglik_terms(r["prompt"], [r["completion"][0]["content"]])[0] for r in records]
    finally:
        engine.close()
    return [total / count for total, count in terms]


def test_finetune_lowers_the_loss_and_moves_the_student_towards_its_targets(student, base_student, sft_file):
    assert sorted(p.name for p in student.iterdir()) == ["adapter", "loss.csv", "student.gguf", "train.json"]
    assert not list(student.parent.glob(".student.*")), "the staging directory is renamed into place"
    rows = list(csv.DictReader(open(student / "loss.csv", encoding="utf-8")))
    training = json.loads((student / "train.json").read_text())
    assert [int(row["step"]) for row in rows] == list(range(1, training["steps"] + 1)) and training["steps"] == 6
    losses = [float(row["loss"]) for row in rows]
    assert losses[-1] < losses[0] - 0.5, losses
    assert training["first_loss"] == losses[0] and training["final_loss"] == losses[-1]
    assert training["examples"] == len(WORDS) and training["train_tokens"] > 0 and training["tokens_per_second"] > 0
    assert training["base"] == {"gguf": smollm2_gguf().name, "sha256": file_hash(smollm2_gguf())}
    assert training["inputs"] == {str(sft_file): file_hash(sft_file)} and training["seed"] == 3
    assert training["settings"]["lora"]["r"] == 8 and training["libraries"]["trl"] == "1.16.0"

    records = list(read_jsonl(sft_file))
    trained = mean_target_logprob(student / "student.gguf", records)
    untrained = mean_target_logprob(base_student / "student.gguf", records)
    assert all(after > before for after, before in zip(trained, untrained, strict=True)), (trained, untrained)
    assert np.mean(trained) > np.mean(untrained) + 0.5, (trained, untrained)


def test_a_student_trained_before_is_taken_from_the_cache_and_any_change_misses_it(
    student, student_cache, sft_file, tmp_path
):
    again = tmp_path / "again"
    finetune(sft_file, again, student_cache, TRAIN)
    log = (tmp_path / "again.log").read_text()
    assert "student cache hit" in log and "training_steps=0" in log and "step=1 " not in log
    for name in ("student.gguf", "loss.csv", "train.json"):
        assert (again / name).read_bytes() == (student / name).read_bytes(), name
    # The key covers the data, every setting and the base: changing any of them trains a new student.
    changed = tmp_path / "changed.jsonl"
    changed.write_text(sft_file.read_text() + json.dumps(sft_record(99, "blorp")) + "\n")
    probe = (
        "import json, sys\n"
        "from polyfuse.finetune import FinetuneSettings, student_key\n"
        "train, sft, changed = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]\n"
        "key = lambda raw, path: student_key(FinetuneSettings.from_dict(raw), [path])\n"
        "print(json.dumps([key(train, sft), key(train, changed), key({**train, 'learning_rate': 0.001}, sft),"
        " key({**train, 'gguf_type': 'q8_0'}, sft)]))\n"
    )
    keys = json.loads(run_train("-c", probe, json.dumps(TRAIN), str(sft_file), str(changed)).stdout)
    assert keys[0] == json.loads((student / "train.json").read_text())["key"]
    assert len(set(keys)) == 4, keys


def test_base_export_agrees_with_transformers(base_student, tmp_path):
    """llama.cpp on the exported base and transformers on the original GGUF give the same log-probs and greedy tokens;
    a Q/K projection written without llama.cpp's rotary permutation would not."""
    llm = llama(base_student / "student.gguf", logits_all=True)
    sequences = [llm.tokenize(text.encode(), add_bos=False, special=True) for text in REFERENCE_TEXTS]
    prompt = llm.tokenize(GREEDY_PROMPT.encode(), add_bos=False, special=True)
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"sequences": sequences, "prompt": prompt, "max_new_tokens": 8}))
    reference = json.loads(
        run_train(str(REPO / "tests/helpers/hf_reference.py"), str(smollm2_gguf()), str(request))
        .stdout.strip()
        .splitlines()[-1]
    )
    for tokens, expected in zip(sequences, reference["logprobs"], strict=True):
        llm.reset()
        llm.eval(tokens)
        logits = np.asarray(llm.scores[: len(tokens) - 1], dtype=np.float64)
        peak = logits.max(axis=1, keepdims=True)
        log_norm = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
        got = logits[np.arange(len(tokens) - 1), tokens[1:]] - log_norm
        assert abs(got.mean() - np.mean(expected)) < MEAN_LOGPROB_TOLERANCE
        assert np.max(np.abs(got - np.asarray(expected))) < TOKEN_LOGPROB_TOLERANCE
    llm.reset()
    llm.eval(prompt)
    greedy = []
    for _ in range(len(reference["greedy"])):
        greedy.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval(greedy[-1:])
    assert greedy == reference["greedy"]
    original = llama(smollm2_gguf(), vocab_only=True).metadata
    exported = llm.metadata
    assert exported["tokenizer.chat_template"] == original["tokenizer.chat_template"]
    assert {k: v for k, v in exported.items() if k != "general.file_type"} == {
        k: v for k, v in original.items() if k != "general.file_type"
    }
    assert exported["general.file_type"] == "0"  # ALL_F32


def test_gguf_permutation_inverts_the_transformers_loader():
    code = (
        "import numpy as np; from polyfuse.gguf_export import permute_for_gguf; "
        "from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor as P; "
        "w = np.random.default_rng(0).normal(size=(9 * 64, 576)); k = w[: 3 * 64]; "
        "p = P({'num_attention_heads': 9, 'num_key_value_heads': 3}); "
        "assert np.array_equal(p.process(permute_for_gguf(w, 9), 'blk.0.attn_q.weight').weights, w); "
        "assert np.array_equal(p.process(permute_for_gguf(k, 3), 'blk.0.attn_k.weight').weights, k); "
        "assert not np.array_equal(permute_for_gguf(w, 9), w); print('ok')"
    )
    assert run_train("-c", code).stdout.strip().endswith("ok")


def test_empty_set_is_an_error_naming_it(tmp_path):
    empty = tmp_path / "sft.jsonl"
    empty.write_text("")
    out = tmp_path / "student"
    result = cli(
        "finetune",
        "--inputs",
        str(empty),
        "--out",
        str(out),
        "--set",
        "bon",
        "--settings",
        json.dumps(settings()),
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"polyfuse error in rule finetune: set 'bon': no training records in {empty}; nothing to train"
    )
    assert not out.exists()


def test_record_without_completion_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "sft.jsonl"
    broken = sft_record(1, "x")
    del broken["completion"]
    write_jsonl(path, [sft_record(0, "y"), broken])
    with pytest.raises(
        PolyfuseError, match=rf"^{path}:2: 'completion' must be a non-empty list of \{{role, content\}}$"
    ):
        read_sft_examples([path], "demo")
    broken["completion"] = [{"role": "assistant"}]
    write_jsonl(path, [broken])
    with pytest.raises(PolyfuseError, match=rf"^{path}:1: 'completion'"):
        read_sft_examples([path], "demo")


def test_settings_name_an_unknown_key_and_an_impossible_export():
    with pytest.raises(PolyfuseError, match="distill.finetune: unknown key 'batchsize'"):
        FinetuneSettings.from_dict(settings(batchsize=4))
    with pytest.raises(PolyfuseError, match="distill.finetune.lora: unknown key 'rank'"):
        FinetuneSettings.from_dict(settings(lora={"rank": 4}))
    with pytest.raises(PolyfuseError, match="use export: hf"):
        FinetuneSettings.from_dict({"base": {"hf": "HuggingFaceTB/SmolLM2-135M-Instruct"}})
    parsed = FinetuneSettings.from_dict(settings(lora={"r": 4, "target_modules": ["q_proj", "v_proj"]}))
    assert parsed.lora.r == 4 and parsed.lora.alpha == 16 and parsed.lora.target_modules == ("q_proj", "v_proj")
    assert parsed.method == "lora" and parsed.export == "gguf"


def test_out_of_memory_is_one_line_naming_the_set_and_the_keys_that_size_it():
    code = (
        "import torch; from polyfuse.errors import PolyfuseError; "
        "from polyfuse.finetune import FinetuneSettings, out_of_memory_as_error; "
        "s = FinetuneSettings.from_dict({'base': {'gguf': 'x.gguf'}, 'batch_size': 8, 'max_seq_length': 512}); "
        "failures = [torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB'), MemoryError(), "
        "RuntimeError('CUDA error: out of memory')]\n"
        "for failure in failures:\n"
        "    try:\n"
        "        with out_of_memory_as_error('fusion', s): raise failure\n"
        "    except PolyfuseError as exc: print(exc)\n"
        "try:\n"
        "    with out_of_memory_as_error('fusion', s): raise RuntimeError('shape mismatch')\n"
        "except RuntimeError as exc: print(type(exc).__name__, exc)"
    )
    lines = run_train("-c", code).stdout.strip().splitlines()
    expected = (
        "set 'fusion': out of memory while fine-tuning; "
        "lower distill.finetune batch_size=8, max_seq_length=512, lora.r=8"
    )
    assert lines == [expected] * 3 + ["RuntimeError shape mismatch"]


def test_a_failed_run_leaves_nothing_under_the_output_name(tmp_path):
    out = tmp_path / "student"
    with pytest.raises(PolyfuseError), staged_directory(out) as stage:
        (stage / "loss.csv").write_text("step\n")
        raise PolyfuseError("training failed")
    assert list(tmp_path.iterdir()) == []
    with staged_directory(out) as stage:
        (stage / "train.json").write_text("{}")
    assert [p.name for p in tmp_path.iterdir()] == ["student"] and (out / "train.json").is_file()


def test_the_base_is_named_by_its_gguf_whether_dequantized_now_or_read_from_the_cache(tmp_path):
    # what a student records of its base (the adapter's config and card) was the GGUF's folder or the dequantized
    # copy, by which job dequantized first: a resumed study's adapter card differed
    probe = (
        "import json, sys\n"
        "from polyfuse.finetune import load_base\n"
        "names = [load_base({'gguf': sys.argv[1]}, sys.argv[2])[0] for _ in range(2)]\n"
        "print(json.dumps([[m.name_or_path, m.config._name_or_path] for m in names]))\n"
    )
    named = json.loads(run_train("-c", probe, str(smollm2_gguf()), str(tmp_path / "cache")).stdout)
    assert list((tmp_path / "cache").glob("base-*")), "the second load read the dequantized copy"
    assert named == [[str(smollm2_gguf())] * 2] * 2
