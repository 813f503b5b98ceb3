"""Reward-model scoring for BoN: any transformers sequence-classification reward model.

Public reward models (Skywork-Reward-V2, for one) score a chat-formatted (prompt,
response) conversation; models without a chat template get the prompt and the
response as a text pair. Runs in the torch environment (envs/comet.yaml).
"""

from __future__ import annotations

from typing import Sequence

from polyfuse.errors import PolyfuseError


class RewardModel:
    def __init__(self, name_or_path: str, device: str = "auto", batch_size: int = 8, max_length: int = 4096,
                 dtype: str | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                name_or_path, torch_dtype=getattr(torch, dtype) if dtype else None
            )
        except (OSError, ValueError) as exc:  # a missing directory reaches the hub client, which rejects the name
            raise PolyfuseError(f"reward model {name_or_path!r} could not be loaded: {exc}".splitlines()[0]) from None
        if self.model.config.num_labels != 1:
            raise PolyfuseError(f"reward model {name_or_path!r} has {self.model.config.num_labels} labels; expected 1")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.model.to(device).eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self.name = name_or_path
        self.calls = 0

    def _encode(self, prompt: str, responses: Sequence[str]):
        if self.tokenizer.chat_template:
            texts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=False
                )
                for response in responses
            ]
            # The chat template already wrote the special tokens.
            return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                  add_special_tokens=False, return_tensors="pt")
        return self.tokenizer([prompt] * len(responses), list(responses), padding=True, truncation="longest_first",
                              max_length=self.max_length, return_tensors="pt")

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        import torch

        scores: list[float] = []
        for start in range(0, len(responses), self.batch_size):
            batch = self._encode(prompt, responses[start : start + self.batch_size]).to(self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits
            self.calls += 1
            scores.extend(float(value) for value in logits[:, 0].float().cpu())
        return scores
