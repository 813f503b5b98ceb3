"""The openai engine: retries, base URLs and response checks against a scripted HTTP peer, then for real
against llama.cpp's server."""

from __future__ import annotations

import email.utils
import json
import logging
import os
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from polyfuse.cache import OutputCache
from polyfuse.engines import GenerationRequest, SamplingParams, create_engine
from polyfuse.engines.openai import api_root, retry_after_seconds
from polyfuse.errors import PolyfuseError
from polyfuse.io import read_jsonl, write_jsonl
from polyfuse.sample import SamplingJob, run_sample
from polyfuse.tasks import task_kind
from tests.helpers.llama_server import LlamaServer, free_port
from tests.helpers.workflow import REPO, cache_entries, model_calls, snakemake

PARAMS = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=16)
CHAT = [{"role": "user", "content": "hi"}]
CHAT_ENDPOINT = r"127\.0\.0\.1:\d+/v1/chat/completions \(model served\)"  # as errors name it

CHAOS_SAMPLING = {"temperature": 0.7, "top_p": 0.95, "max_tokens": 8}


class ScriptedPeer(BaseHTTPRequestHandler):
    """Answers from a list of (status, headers, body[, seconds to wait first]) and records what it was sent.

    Unscripted requests get a 200 whose text is "seed <the request's seed>"; a scripted body of None means that too.
    """

    script: list = []
    seen: list = []
    in_flight = max_in_flight = 0
    delay = 0.0  # seconds every answer waits, so concurrent requests overlap
    lock = threading.Lock()

    def do_POST(self):
        peer = type(self)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with peer.lock:
            peer.seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            status, headers, reply, wait = (*peer.script.pop(0), 0.0)[:4] if peer.script else (200, {}, None, 0.0)
            peer.in_flight += 1
            peer.max_in_flight = max(peer.max_in_flight, peer.in_flight)
        time.sleep(wait + peer.delay)
        with peer.lock:
            peer.in_flight -= 1
        if reply is None:
            text = f"seed {body.get('seed')}"
            choice = {"message": {"role": "assistant", "content": text}} if "messages" in body else {"text": text}
            reply = {
                "choices": [{"index": 0, **choice, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            }
        try:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(json.dumps(reply).encode())
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and hung up
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def peer():
    ScriptedPeer.script, ScriptedPeer.seen = [], []
    ScriptedPeer.in_flight = ScriptedPeer.max_in_flight = 0
    ScriptedPeer.delay = 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedPeer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def engine_for(url, **extra):
    spec = {
        "engine": "openai",
        "base_url": url,
        "model": "served",
        "prompt_style": "chat",
        "max_retries": 3,
        "backoff_seconds": 0.01,
        **extra,
    }
    return create_engine("remote", spec)


def generate_one(engine, prompt=CHAT, seed=1):
    (generation,) = engine.generate([GenerationRequest(prompt, PARAMS, seed=seed)])
    return generation


def test_n_samples_are_n_seeded_requests_and_the_key_stays_out_of_logs(peer, monkeypatch, caplog):
    monkeypatch.setenv("POLYFUSE_TEST_KEY", "sk-secret-123")
    engine = engine_for(peer, api_key_env="POLYFUSE_TEST_KEY")
    with caplog.at_level(logging.DEBUG):  # the SDK's and its HTTP client's debug logs too
        (generation,) = engine.generate([GenerationRequest(CHAT, PARAMS, seed=10, n=3)])
    assert generation.texts == ["seed 10", "seed 11", "seed 12"]
    assert all(call["body"]["n"] == 1 and call["auth"] == "Bearer sk-secret-123" for call in ScriptedPeer.seen)
    assert caplog.text and "sk-secret" not in caplog.text and "sk-secret" not in json.dumps(engine.identity())


def test_an_echoed_key_is_redacted_from_errors_and_retry_logs(peer, monkeypatch, caplog):
    monkeypatch.setenv("POLYFUSE_TEST_KEY", "sk-secret-123")
    ScriptedPeer.script = [(503, {}, {"error": "busy"}), (401, {}, {"error": "bad key sk-secret-123"})]
    with caplog.at_level(logging.DEBUG), pytest.raises(PolyfuseError, match="HTTP 401") as failure:
        generate_one(engine_for(peer, api_key_env="POLYFUSE_TEST_KEY"))
    assert "bad key <api key>" in str(failure.value) and "\n" not in str(failure.value)
    assert "sk-secret" not in str(failure.value) and "sk-secret" not in caplog.text


def test_without_its_key_the_engine_never_sends_the_sdk_default_key(peer, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-for-openai-only")
    monkeypatch.delenv("POLYFUSE_UNSET_KEY", raising=False)
    generate_one(engine_for(peer, api_key_env="POLYFUSE_UNSET_KEY"))
    assert "sk-for-openai-only" not in ScriptedPeer.seen[0]["auth"]


@pytest.mark.parametrize(
    ("suffix", "endpoint"),
    [
        ("", "/v1/"),
        ("/", "/v1/"),
        ("/v1", "/v1/"),
        ("/v1/", "/v1/"),
        ("/v1beta/openai/", "/v1beta/openai/"),
        ("/v1beta/openai", "/v1beta/openai/"),
        ("/api/v2", "/api/v2/"),
    ],
)
def test_a_base_url_with_a_path_is_the_api_root_and_a_bare_host_gets_v1(peer, suffix, endpoint):
    engine = engine_for(peer + suffix)
    generate_one(engine, prompt=CHAT)
    generate_one(engine, prompt="Once upon a time")
    assert [call["path"] for call in ScriptedPeer.seen] == [f"{endpoint}chat/completions", f"{endpoint}completions"]


def test_gemini_openai_endpoint_is_used_as_is():
    gemini = "https://generativelanguage.googleapis.com/v1beta/openai/"
    assert api_root("gemini", gemini) == gemini
    assert api_root("gpt", "https://api.openai.com") == "https://api.openai.com/v1/"
    with pytest.raises(PolyfuseError, match="model 'local': base URL 'localhost:8000' is not an http"):
        api_root("local", "localhost:8000")


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 501, 502, 503, 504, 505, 507, 511, 599])
def test_every_5xx_and_the_transient_4xx_are_retried(peer, status, caplog):
    ScriptedPeer.script = [(status, {}, {"error": "transient"})]
    with caplog.at_level(logging.WARNING):
        assert generate_one(engine_for(peer)).texts == ["seed 1"]
    assert len(ScriptedPeer.seen) == 2 and f"HTTP {status}; retry 1/3" in caplog.text


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_fail_at_once_naming_endpoint_and_model(peer, status):
    ScriptedPeer.script = [(status, {}, {"error": "no such thing"})]
    with pytest.raises(PolyfuseError, match=CHAT_ENDPOINT + f": HTTP {status}: "):
        generate_one(engine_for(peer))
    assert len(ScriptedPeer.seen) == 1


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("120") == 120.0 and retry_after_seconds("1.5") == 1.5
    assert 85 <= retry_after_seconds(http_date(90)) <= 90
    assert 85 <= retry_after_seconds(email.utils.formatdate(time.time() + 90)) <= 90  # a "-0000" zone
    assert retry_after_seconds(http_date(-60)) == 0.0 and retry_after_seconds("-3") == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


@pytest.mark.parametrize("retry_after", ["0.2", "3600", "http-date-in-an-hour"])
def test_retry_after_sets_the_wait_capped_by_backoff_max(peer, retry_after, caplog):
    header = http_date(3600) if retry_after == "http-date-in-an-hour" else retry_after
    ScriptedPeer.script = [(429, {"Retry-After": header}, {"error": "slow down"})]
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        assert generate_one(engine_for(peer, backoff_max_seconds=0.3)).texts == ["seed 1"]
    expected = min(0.3, float(retry_after)) if retry_after[0].isdigit() else 0.3
    assert f"HTTP 429; retry 1/3 in {expected:.1f}s" in caplog.text
    assert expected <= time.perf_counter() - start < 3


def test_last_retry_fails_with_the_endpoint_and_model(peer):
    ScriptedPeer.script = [(500, {}, {"error": "boom"})] * 4
    with pytest.raises(PolyfuseError, match=CHAT_ENDPOINT + " failed after 4 attempts: HTTP 500"):
        generate_one(engine_for(peer))


def test_a_429_whose_retry_after_outlasts_the_retries_fails_as_one_line(peer, caplog):
    ScriptedPeer.script = [(429, {"Retry-After": "0"}, {"error": "slow down"})] * 2
    with caplog.at_level(logging.WARNING), pytest.raises(PolyfuseError) as failure:
        generate_one(engine_for(peer, max_retries=1))
    assert re.fullmatch(f"http://{CHAT_ENDPOINT} failed after 2 attempts: HTTP 429", str(failure.value))
    assert "HTTP 429; retry 1/1 in 0.0s" in caplog.text and len(ScriptedPeer.seen) == 2


def test_a_server_that_times_out_on_every_attempt_fails_as_one_line(peer):
    ScriptedPeer.script = [(200, {}, None, 1.0)] * 2  # each slower than the timeout
    with pytest.raises(PolyfuseError) as failure:
        generate_one(engine_for(peer, timeout_seconds=0.3, max_retries=1))
    assert re.fullmatch(f"http://{CHAT_ENDPOINT} failed after 2 attempts: Request timed out\\..*", str(failure.value))
    assert "\n" not in str(failure.value)


def test_timeouts_and_refused_connections_are_retried(peer):
    ScriptedPeer.script = [(200, {}, None, 1.0)]  # slower than the timeout
    assert generate_one(engine_for(peer, timeout_seconds=0.3)).texts == ["seed 1"] and len(ScriptedPeer.seen) == 2
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PolyfuseError, match=CHAT_ENDPOINT + " failed after 2 attempts: Connection error"):
        generate_one(engine_for(closed, max_retries=1))


def test_a_response_without_choices_is_an_error_and_an_empty_message_an_empty_answer(peer):
    ScriptedPeer.script = [(200, {}, {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 0}})]
    with pytest.raises(PolyfuseError, match=CHAT_ENDPOINT + " returned no choices"):
        generate_one(engine_for(peer))
    assert len(ScriptedPeer.seen) == 1  # a malformed answer is not retried
    ScriptedPeer.script = [
        (
            200,
            {},
            {
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "content_filter"}
                ]
            },
        )
    ]
    generation = generate_one(engine_for(peer))
    assert generation.texts == [""] and generation.finish_reasons == ["content_filter"] and generation.tokens_out == [0]
    ScriptedPeer.script = [(200, {}, {"choices": [{"index": 0, "finish_reason": "stop"}]})]
    with pytest.raises(PolyfuseError, match="returned a choice without a message"):
        generate_one(engine_for(peer))


def test_every_request_gets_its_n_samples_in_order_within_the_concurrency(peer):
    ScriptedPeer.delay = 0.05
    requests = [GenerationRequest(CHAT, PARAMS, seed=seed, n=3) for seed in (100, 200, 300, 400)]
    generations = list(engine_for(peer, concurrency=2).generate(requests))
    assert [g.texts for g in generations] == [[f"seed {r.seed + k}" for k in range(3)] for r in requests]
    assert all(g.tokens_out == [2, 2, 2] and len(g.finish_reasons) == 3 for g in generations)
    assert len(ScriptedPeer.seen) == 12 and ScriptedPeer.max_in_flight == 2


def logprob_reply(offsets, values):
    return {
        "choices": [
            {
                "index": 0,
                "text": "",
                "finish_reason": "length",
                "logprobs": {"text_offset": offsets, "token_logprobs": values, "tokens": []},
            }
        ]
    }


def test_loglik_scores_the_continuation_tokens_and_rejects_uneven_logprobs(peer):
    engine = engine_for(peer)
    # "Q: " + "yes", then one generated token: only the tokens from offset 3 up to 6 count
    ScriptedPeer.script = [(200, {}, logprob_reply([0, 1, 3, 5, 6], [None, -1.0, -0.5, -1.5, -9.0]))]
    assert engine.loglik("Q: ", ["yes"]) == [-1.0]
    assert engine.loglik_reads == [5]  # no usage in the reply: the echoed tokens are what the server read
    assert ScriptedPeer.seen[0]["path"] == "/v1/completions" and ScriptedPeer.seen[0]["body"]["echo"] is True
    ScriptedPeer.script = [(200, {}, logprob_reply([0, 1, 3, 5], [None, -1.0, -0.5]))]
    uneven = r"/v1/completions \(model served\) returned 4 token offsets but 3 logprobs"
    with pytest.raises(PolyfuseError, match=uneven):
        engine.loglik("Q: ", ["yes"])


@pytest.fixture(scope="module")
def server():
    server = LlamaServer()
    server.start()
    yield server
    server.stop()


def test_real_server_chat_and_completions(server):
    engine = create_engine(
        "smol-remote",
        {"engine": "openai", "base_url": server.url, "model": "smol", "prompt_style": "chat", "concurrency": 2},
    )
    chat, raw = engine.generate(
        [
            GenerationRequest([{"role": "user", "content": "Name a colour."}], PARAMS, seed=3, n=2),
            GenerationRequest("The capital of France is", SamplingParams(0.0, 1.0, 8, ("\n",)), seed=0),
        ]
    )
    assert len(chat.texts) == 2 and all(chat.texts) and chat.tokens_in > 5
    assert raw.texts[0].strip() and raw.tokens_out[0] <= 8
    colour = [{"role": "user", "content": "Name a colour."}]
    again = next(engine.generate([GenerationRequest(colour, PARAMS, seed=3, n=2)]))
    assert again.texts == chat.texts  # the server honours the seed
    # The echoed prompt logprobs come back, one score per continuation; their values are not compared, as
    # llama-cpp-python's server scores each token one position late (abetlen/llama-cpp-python#1983).
    scores = engine.loglik("1, 2, 3, 4, 5,", [" 6, 7, 8", " zebra fish"])
    assert len(scores) == 2 and all(-100 < score < 0 for score in scores)


def test_server_killed_mid_run_restarts_and_nothing_is_lost_or_duplicated(server, tmp_path):
    items = [
        {"id": f"q{i}", "task": "chat", "lang": "en", "input": f"Say a word that rhymes with {w}."}
        for i, w in enumerate(["cat", "dog", "sun", "tree", "blue", "star"])
    ]
    write_jsonl(tmp_path / "items.jsonl", items)
    write_jsonl(tmp_path / "shots.jsonl", [])
    spec = {
        "engine": "openai",
        "base_url": server.url,
        "model": "smol",
        "prompt_style": "chat",
        "concurrency": 1,
        "max_retries": 30,
        "backoff_seconds": 0.2,
        "backoff_max_seconds": 1.0,
        "timeout_seconds": 30,
    }
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
    with OutputCache(tmp_path / "cache") as cache:
        run_sample(
            str(tmp_path / "items.jsonl"),
            str(tmp_path / "shots.jsonl"),
            str(tmp_path / "pools.jsonl"),
            job=SamplingJob(engine, "chat", cache, task_kind("chat"), n=2, sampling=CHAOS_SAMPLING, seed=5),
        )
    chaos.join()
    assert calls_at_kill and calls_at_kill[0] < 12  # the kill landed mid-run
    pools = list(read_jsonl(tmp_path / "pools.jsonl"))
    assert [pool["id"] for pool in pools] == [item["id"] for item in items]
    seeds = [candidate["seed"] for pool in pools for candidate in pool["candidates"]]
    assert len(seeds) == 12 and len(set(seeds)) == 12
    assert engine.calls == 12  # every candidate was asked for exactly once, retries aside
    assert cache_entries(tmp_path / "cache") == 12
    with OutputCache(tmp_path / "cache") as cache:
        before = engine.calls
        run_sample(
            str(tmp_path / "items.jsonl"),
            str(tmp_path / "shots.jsonl"),
            str(tmp_path / "again.jsonl"),
            job=SamplingJob(engine, "chat", cache, task_kind("chat"), n=2, sampling=CHAOS_SAMPLING, seed=5),
        )
        assert engine.calls == before and list(read_jsonl(tmp_path / "again.jsonl")) == pools


def server_study(workdir, server) -> list[str]:
    """The small translation study with every model call going to the server; returns its targets."""
    config = {
        "models": {
            "smolsrv": {
                "engine": "openai",
                "base_url": server.url,
                "model": "smol",
                "prompt_style": "chat",
                "concurrency": 2,
                "max_retries": 1,
                "backoff_seconds": 0.1,
                "timeout_seconds": 30,
                "api_key_env": "POLYFUSE_TEST_API_KEY",
            }
        },
        "tasks": {
            "wmt": {
                "kind": "translation",
                "languages": ["de"],
                "max_items": 4,
                "max_tokens": 32,
                "dataset": {"format": "wmt24pp", "path": str(REPO / "resources/demo/wmt24pp/en-{lang}.jsonl")},
            }
        },
        "study": {"samplers": ["smolsrv"], "n": 2, "selectors": ["mbr_chrf"], "fusors": ["smolsrv"]},
        "fusion": {"max_tokens": 48},
        "comet": {"model": None},
    }
    (workdir / "config").mkdir()
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
    return [
        "results/wmt/de/pools/smolsrv.jsonl",
        "results/wmt/de/outputs/smolsrv/bon-mbr_chrf.jsonl",
        "results/wmt/de/outputs/smolsrv/fusion-smolsrv.jsonl",
    ]


def test_study_through_a_server_that_dies_fails_cleanly_and_resumes(server, tmp_path):
    targets = server_study(tmp_path, server)
    cache = tmp_path / "results/cache/smolsrv"
    killed = threading.Event()

    def kill_once_work_is_cached():
        deadline = time.time() + 300
        while cache_entries(cache) < 2 and time.time() < deadline:
            time.sleep(0.05)
        server.stop()
        killed.set()

    chaos = threading.Thread(target=kill_once_work_is_cached)
    chaos.start()
    secret = "sk-polyfuse-test-0123456789abcdef"  # sent on every request; must be written nowhere
    env = {**os.environ, "POLYFUSE_TEST_API_KEY": secret}
    first = snakemake(tmp_path, "--cores", "1", *targets, check=False, env=env)
    chaos.join()
    assert killed.is_set() and first.returncode != 0
    assert re.search(
        r"polyfuse error in rule (sample|fuse): http://127\.0\.0\.1:\d+/v1/chat/completions "
        r"\(model smol\) failed after 2 attempts",
        first.stderr,
    ), first.stderr[-2000:]
    done_before = cache_entries(cache)
    assert 2 <= done_before < 12  # 4 items x 2 candidates, then 4 fusions
    if done_before < 8:  # the sampling job died: it left no pools file, whole or partial
        assert not (tmp_path / targets[0]).exists()
    assert not list(tmp_path.rglob("*.tmp"))

    server.start()
    shutil.rmtree(tmp_path / "results/logs")  # count the calls of the resumed run alone
    second = snakemake(tmp_path, "--cores", "1", *targets, env=env)
    assert sum(model_calls(tmp_path).values()) == 12 - done_before  # nothing asked for twice
    # The key is in no result, log, benchmark, cache or Snakemake metadata file, nor in what Snakemake printed.
    leaked = [path for path in tmp_path.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
    assert leaked == [] and all(secret not in run.stdout + run.stderr for run in (first, second))
    assert (tmp_path / ".snakemake/metadata").is_dir() and any((tmp_path / "results/logs").rglob("*.log"))
    assert cache_entries(cache) == 12
    pools = list(read_jsonl(tmp_path / targets[0]))
    assert [len(pool["candidates"]) for pool in pools] == [2, 2, 2, 2]
    assert len({c["seed"] for pool in pools for c in pool["candidates"]}) == 8
    assert all(c["engine"] == "openai" and c["tokens_out"] > 0 for pool in pools for c in pool["candidates"])
    fused = list(read_jsonl(tmp_path / targets[2]))
    assert [record["id"] for record in fused] == [pool["id"] for pool in pools]
    assert all(record["raw"] and record["cost"]["tokens_in"] > 0 for record in fused)
