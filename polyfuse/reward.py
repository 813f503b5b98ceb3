"""Reward-model scoring for BoN: any transformers sequence-classification reward model.

Public reward models (Skywork-Reward-V2, for one) score a chat-formatted (prompt,
response) conversation; models without a chat template get the prompt and the
response as a text pair. Runs in the torch environment (envs/comet.yaml).

A pair longer than ``max_length`` loses tokens from the start of the prompt, so the whole
response (and the template's closing tokens, where the model reads its score) survives; only a
response that alone overflows is cut at its end. Each score says whether its pair was truncated.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

from polyfuse.errors import PolyfuseError

PROMPT, RESPONSE = 0, 1  # which side of the pair a token belongs to; template and special tokens belong to neither


class Rewards(NamedTuple):
    scores: list[float]
    truncated: list[bool]
    cost: dict  # forward passes (one per batch), tokens read (every pair as encoded, padding left out), seconds


def token_side(start: int, end: int, spans: dict[int, tuple[int, int]]) -> int | None:
    """The side whose character span holds the token whole; a token straddling a boundary belongs to none."""
    return next((side for side, (low, high) in spans.items() if 0 <= low <= start < end <= high), None)


class RewardModel:
    def __init__(
        self,
        name_or_path: str,
        device: str = "auto",
        batch_size: int = 8,
        max_length: int = 4096,
        dtype: str | None = None,
    ):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                name_or_path, torch_dtype=getattr(torch, dtype) if dtype else None
            )
        except (OSError, ValueError) as exc:  # a missing directory reaches the hub client, which rejects the name
            raise PolyfuseError(f"reward model {name_or_path!r} could not be loaded: {exc}".splitlines()[0]) from None
        if not self.tokenizer.is_fast:  # token offsets, which locate the prompt's tokens, need a fast tokenizer
            raise PolyfuseError(f"reward model {name_or_path!r} needs a fast tokenizer (prompt-side truncation)")
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

    def _encode_pair(self, prompt: str, response: str) -> tuple[dict, bool]:
        """Token ids (and type ids) of one pair within max_length, and whether it had to be truncated."""
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=False
            )
            prompt_start = text.find(prompt)
            response_start = text.find(response, prompt_start + len(prompt))
            if prompt_start < 0 or response_start < 0:  # a template that rewrites the turns (e.g. trims them)
                raise PolyfuseError(
                    f"reward model {self.name!r}: its chat template does not keep the prompt and the response "
                    "verbatim, so the prompt side cannot be found to truncate"
                )
            spans = {
                PROMPT: (prompt_start, prompt_start + len(prompt)),
                RESPONSE: (response_start, response_start + len(response)),
            }
            # The chat template already wrote the special tokens.
            encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            sides = [token_side(start, end, spans) for start, end in encoding["offset_mapping"]]
        else:
            encoding = self.tokenizer(prompt, response, return_offsets_mapping=True)
            sides = encoding.sequence_ids()
        fields = {key: encoding[key] for key in ("input_ids", "token_type_ids") if key in encoding}
        overflow = len(fields["input_ids"]) - self.max_length
        if overflow <= 0:
            return fields, False
        prompt_positions = [i for i, side in enumerate(sides) if side == PROMPT]
        response_positions = [i for i, side in enumerate(sides) if side == RESPONSE]
        # The prompt's first tokens go first; then, if the response alone overflows, its last ones.
        dropped = set(prompt_positions[:overflow])
        dropped.update(response_positions[::-1][: max(0, overflow - len(dropped))])
        kept = [i for i in range(len(fields["input_ids"])) if i not in dropped][: self.max_length]
        return {key: [values[i] for i in kept] for key, values in fields.items()}, True

    def score(self, prompt: str, responses: Sequence[str]) -> Rewards:
        import torch

        scores: list[float] = []
        truncated: list[bool] = []
        calls, tokens, began = self.calls, 0, time.perf_counter()
        for start in range(0, len(responses), self.batch_size):
            pairs = [self._encode_pair(prompt, response) for response in responses[start : start + self.batch_size]]
            tokens += sum(len(fields["input_ids"]) for fields, _ in pairs)
            batch = self.tokenizer.pad([fields for fields, _ in pairs], return_tensors="pt").to(self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits
            self.calls += 1
            scores.extend(float(value) for value in logits[:, 0].float().cpu())
            truncated.extend(cut for _, cut in pairs)
        cost = {
            "calls": self.calls - calls,
            "tokens_in": tokens,
            "tokens_out": 0,
            "seconds": time.perf_counter() - began,
        }
        return Rewards(scores, truncated, cost)
