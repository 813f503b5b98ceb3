"""Fine-tuning a student on a distill set's SFT records, and exporting it for llama.cpp (setting 2).

Runs in the train environment (envs/train.yaml, `.venv-train`) through ``python -m polyfuse.cli finetune`` and
``export-base``. The base is a GGUF file, local or on the hub (dequantized by transformers), or a Hugging Face model.
TRL's SFTTrainer trains on the records' conversational ``prompt``/``completion`` fields with the loss on the completion
only: a LoRA adapter (peft) by default, every weight with ``method: full``. The output directory holds ``adapter/``
(LoRA) or ``model/`` (full), ``student.gguf`` (export: gguf, merged weights) or a merged HF ``model/`` (export: hf, for
vLLM students), ``loss.csv`` (one row per optimizer step) and ``train.json`` (provenance and throughput). It is built in
a temporary sibling and renamed into place only when complete. ``export-base`` puts the untrained base through the same
export, so the base student differs from the trained ones only by training.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib.metadata
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from polyfuse.errors import PolyfuseError
from polyfuse.gguf_export import GGUF_TYPES, export_gguf
from polyfuse.io import (
    content_hash,
    file_hash,
    published_directory,
    read_jsonl_numbered,
    staged_directory,
    write_json,
)

log = logging.getLogger("polyfuse")

LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "gguf")
LOSS_COLUMNS = ("step", "epoch", "loss", "learning_rate", "seconds")
# Part of every student's cache key: bump it when the training or export code changes what a student is.
STUDENT_FORMAT = 2


@dataclasses.dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"  # peft's shorthand: every linear layer but the output head


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """Config `distill.finetune`: the one place its keys and their defaults live."""

    base: dict
    method: str = "lora"
    epochs: int = 2
    max_steps: int | None = None
    learning_rate: float = 3e-4
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_seq_length: int = 256
    seed: int = 0
    lora: LoraSettings = LoraSettings()
    export: str = "gguf"
    gguf_type: str = "q8_0"  # the student GGUF's matrices: q8_0 (4x smaller, faster in llama.cpp) or exact f32
    gradient_checkpointing: bool = False  # trades ~30% more compute for activation memory on large bases

    def with_local_base(self) -> FinetuneSettings:
        """These settings with a hub GGUF base downloaded (once, into the hub cache) and named by its local path."""
        if "hub" not in self.base:
            return self
        from polyfuse.engines.llamacpp import resolve_gguf

        return dataclasses.replace(self, base={"gguf": str(resolve_gguf("distill.student", {"hub": self.base["hub"]}))})

    @classmethod
    def from_dict(cls, raw: dict) -> FinetuneSettings:
        values = _known_keys(raw, cls, "distill.finetune")
        if "lora" in values:
            lora = _known_keys(values["lora"] or {}, LoraSettings, "distill.finetune.lora")
            if isinstance(lora.get("target_modules"), list):
                lora["target_modules"] = tuple(lora["target_modules"])
            values["lora"] = LoraSettings(**lora)
        if "base" not in values:
            raise PolyfuseError("distill.finetune.base: give the student's base as {gguf: FILE} or {hf: ID_OR_DIR}")
        settings = cls(**values)
        settings.check()
        return settings.with_local_base()

    def check(self) -> None:
        base_kinds = [key for key in ("gguf", "hub", "hf") if key in self.base]
        if len(base_kinds) != 1 or set(self.base) - {"gguf", "hub", "hf", "revision"}:
            raise PolyfuseError(
                f"distill.finetune.base: give exactly one of 'gguf', 'hub' or 'hf', got {sorted(self.base)}"
            )
        if self.method not in ("lora", "full"):
            raise PolyfuseError(f"distill.finetune.method: 'lora' or 'full', got {self.method!r}")
        if self.export not in ("gguf", "hf"):
            raise PolyfuseError(f"distill.finetune.export: 'gguf' or 'hf', got {self.export!r}")
        if self.gguf_type not in GGUF_TYPES:
            raise PolyfuseError(f"distill.finetune.gguf_type: one of {', '.join(GGUF_TYPES)}, got {self.gguf_type!r}")
        if self.export == "gguf" and "hf" in self.base:
            raise PolyfuseError(
                "distill.finetune.export: 'gguf' copies the tokenizer and metadata from a base GGUF, but the base is "
                f"{self.base['hf']!r} (hf); use export: hf for a vLLM student"
            )
        if not self.epochs > 0:
            raise PolyfuseError(f"distill.finetune.epochs: must be above 0, got {self.epochs!r}")
        for key in ("batch_size", "gradient_accumulation_steps", "max_seq_length"):
            if int(getattr(self, key)) < 1:
                raise PolyfuseError(f"distill.finetune.{key}: must be at least 1, got {getattr(self, key)!r}")

    @property
    def size_keys(self) -> str:
        """The keys that size training memory, with their values, for an out-of-memory message."""
        keys = f"batch_size={self.batch_size}, max_seq_length={self.max_seq_length}"
        return keys + (f", lora.r={self.lora.r}" if self.method == "lora" else "")


def _known_keys(raw: dict, cls: type, where: str) -> dict:
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise PolyfuseError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(names))})")
    return dict(raw)


def read_sft_examples(paths: Sequence[str | os.PathLike], set_name: str) -> list[dict]:
    """The prompt/completion pairs of every SFT file; a record without them is an error naming file and line."""
    examples = []
    for path in paths:
        for line_no, record in read_jsonl_numbered(path):
            for field in ("prompt", "completion"):
                messages = record.get(field)
                if not isinstance(messages, list) or not messages or not all(_is_message(m) for m in messages):
                    raise PolyfuseError(f"{path}:{line_no}: {field!r} must be a non-empty list of {{role, content}}")
            examples.append({"prompt": record["prompt"], "completion": record["completion"]})
    if not examples:
        raise PolyfuseError(f"set {set_name!r}: no training records in {', '.join(map(str, paths))}; nothing to train")
    return examples


def _is_message(message: Any) -> bool:
    return (
        isinstance(message, dict) and isinstance(message.get("role"), str) and isinstance(message.get("content"), str)
    )


@contextlib.contextmanager
def out_of_memory_as_error(set_name: str, settings: FinetuneSettings) -> Iterator[None]:
    """Turn an out-of-memory failure (host or accelerator) into one line naming the set and the keys that size it."""
    import torch

    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        is_oom = isinstance(exc, torch.OutOfMemoryError | MemoryError) or "out of memory" in str(exc).lower()
        if not is_oom:
            raise
        raise PolyfuseError(
            f"set {set_name!r}: out of memory while fine-tuning; lower distill.finetune {settings.size_keys}"
        ) from None


def use_threads(threads: int | None) -> None:
    """Cap torch's CPU threads at the job's share: more threads than free cores stall at every synchronisation."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def load_base(base: dict, cache_dir: str | os.PathLike | None = None):
    """The base model (float32) and its tokenizer, from a GGUF file (dequantized) or a Hugging Face id/directory.

    A GGUF's dequantized weights are kept under `cache_dir` (keyed by the file's hash), since dequantizing takes far
    longer than loading them back; the weights are the same either way.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if "gguf" in base:
        path = Path(base["gguf"])
        if not path.is_file():
            raise PolyfuseError(f"distill.finetune.base.gguf: file not found: {path}")
        transformers_version = importlib.metadata.version("transformers")  # it does the dequantizing
        cached = Path(cache_dir) / f"base-{file_hash(path)}-transformers-{transformers_version}" if cache_dir else None
        if cached is not None and cached.is_dir():
            model = AutoModelForCausalLM.from_pretrained(cached, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(cached)
        else:
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
            # The weights are dequantized on load; the GGUF quantizer left behind would block training and saving.
            model.hf_quantizer.remove_quantization_config(model)
            if cached is not None:  # every finetune job may dequantize the same base at once: the first copy is kept
                with published_directory(cached) as stage:
                    model.save_pretrained(stage)
                    tokenizer.save_pretrained(stage)
        # Named by its GGUF either way, so what a student records of its base (the adapter's config and card) does
        # not depend on whether another job had dequantized it first.
        model.name_or_path = model.config._name_or_path = str(path)
        return model, tokenizer
    revision = base.get("revision")
    try:
        tokenizer = AutoTokenizer.from_pretrained(base["hf"], revision=revision)
        model = AutoModelForCausalLM.from_pretrained(base["hf"], revision=revision, dtype=torch.float32)
    except OSError as exc:
        raise PolyfuseError(
            f"distill.finetune.base.hf: cannot load {base['hf']!r}: {str(exc).splitlines()[0]}"
        ) from None
    return model, tokenizer


def student_key(settings: FinetuneSettings, inputs: Sequence[str | os.PathLike]) -> str:
    """What a student is made of: its data, its settings, its base's content and the training libraries."""
    base = settings.base
    identity = (
        {"gguf_sha256": file_hash(base["gguf"])} if "gguf" in base else {k: base.get(k) for k in ("hf", "revision")}
    )
    return content_hash(
        {
            "inputs": [file_hash(path) for path in inputs],
            "settings": {**dataclasses.asdict(settings), "base": identity},
            "libraries": library_versions(),
            "format": STUDENT_FORMAT,
        }
    )


def link_tree(source: Path, target: Path) -> None:
    """`source`'s files under `target` as hard links (copies across file systems): a cached student costs no space."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, dirs_exist_ok=True)


@contextlib.contextmanager
def cached_student(out_dir: str | os.PathLike, key: str, cache_dir: str | os.PathLike | None) -> Iterator[Path | None]:
    """Yield None and link the cached student into `out_dir` when `key` is cached; else yield a stage to build in,
    which replaces `out_dir` and is kept in the cache when the block succeeds."""
    cached = Path(cache_dir) / key if cache_dir else None
    if cached is not None and cached.is_dir():
        with staged_directory(out_dir) as stage:
            link_tree(cached, stage)
        log.info("student cache hit key=%s training_steps=0", key)
        yield None
        return
    with staged_directory(out_dir) as stage:
        yield stage
    if cached is not None:
        with published_directory(cached) as stage:
            link_tree(Path(out_dir), stage)


def base_identity(base: dict, model) -> dict:
    if "gguf" in base:
        return {"gguf": Path(base["gguf"]).name, "sha256": file_hash(base["gguf"])}
    return {"hf": base["hf"], "revision": base.get("revision"), "commit": getattr(model.config, "_commit_hash", None)}


def library_versions() -> dict:
    return {name: importlib.metadata.version(name) for name in LIBRARIES}


def peft_model(model, settings: FinetuneSettings):
    """The model to train: wrapped in a seeded LoRA adapter, or itself for full fine-tuning."""
    from peft import LoraConfig, get_peft_model
    from transformers import set_seed

    if settings.method == "full":
        return model
    set_seed(settings.seed)  # the adapter's initial weights are random
    lora = settings.lora
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules) if isinstance(lora.target_modules, tuple) else lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def sft_config(settings: FinetuneSettings, output_dir: Path):
    import torch
    from trl import SFTConfig

    on_gpu = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps if settings.max_steps is not None else -1,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_seq_length,
        seed=settings.seed,
        data_seed=settings.seed,
        completion_only_loss=True,
        packing=False,
        gradient_checkpointing=settings.gradient_checkpointing,
        # TRL defaults to bf16, which a CPU emulates slowly and which changes the numbers; bf16 only on a GPU with it.
        bf16=on_gpu and torch.cuda.is_bf16_supported(),
        use_cpu=not on_gpu,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=False,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
    )


def plain_loss_trainer():
    """TRL's SFTTrainer (data, completion masks, collation, loop) with the model's own loss.

    TRL 1.16's loss also computes every token's entropy and top-1 match each step, for its logged metrics alone;
    on a CPU that is about a sixth of the step (benchmarks/bench_finetune.py: 0.82 of a bare loop's tokens/s).
    The loss is the same: the mean negative log-likelihood of the completion tokens.
    """
    from transformers import Trainer
    from trl import SFTTrainer

    class PlainLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return PlainLossSFTTrainer


def loss_logger(path: Path):
    """A TrainerCallback writing one loss.csv row per logged optimizer step, flushed as it goes."""
    from transformers import TrainerCallback

    class LossLogger(TrainerCallback):
        def __init__(self) -> None:
            self.rows: list[dict] = []
            self.start = time.perf_counter()
            self.handle = open(path, "w", newline="", encoding="utf-8")  # closed at train end
            self.writer = csv.DictWriter(self.handle, fieldnames=LOSS_COLUMNS)
            self.writer.writeheader()

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return  # the run's closing summary log carries train_loss, not a step's loss
            row = {
                "step": state.global_step,
                "epoch": round(float(logs.get("epoch", state.epoch or 0.0)), 4),
                "loss": float(logs["loss"]),
                "learning_rate": float(logs.get("learning_rate", 0.0)),
                "seconds": round(time.perf_counter() - self.start, 3),
            }
            self.rows.append(row)
            self.writer.writerow(row)
            self.handle.flush()
            log.info("step=%d epoch=%.2f loss=%.4f", row["step"], row["epoch"], row["loss"])

        def on_train_end(self, args, state, control, **kwargs):
            self.handle.close()

    return LossLogger()


def train_student(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    set_name: str,
    raw_settings: dict,
    cache_dir: str | os.PathLike | None = None,
) -> dict:
    """Fine-tune the base on the set's SFT files into `out_dir`; returns the train.json record.

    With `cache_dir`, a student already trained on the same data, settings, base and libraries is reused: no step runs.
    """
    settings = FinetuneSettings.from_dict(raw_settings)
    examples = read_sft_examples(inputs, set_name)
    key = student_key(settings, inputs)
    with cached_student(out_dir, key, cache_dir) as stage:
        if stage is None:
            return json.loads((Path(out_dir) / "train.json").read_text(encoding="utf-8"))
        record = _train(examples, inputs, stage, set_name, settings, cache_dir)
        record["key"] = key
        write_json(stage / "train.json", record)
    log.info("set=%s training_steps=%d tokens/s=%s", set_name, record["steps"], record["tokens_per_second"])
    return record


def _train(examples: list[dict], inputs, stage: Path, set_name: str, settings: FinetuneSettings, cache_dir) -> dict:
    start = time.perf_counter()
    from datasets import Dataset

    model, tokenizer = load_base(settings.base, cache_dir)
    identity = base_identity(settings.base, model)
    losses = loss_logger(stage / "loss.csv")
    trainer = plain_loss_trainer()(
        model=peft_model(model, settings),
        args=sft_config(settings, stage / "trainer"),
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        callbacks=[losses],
    )
    train_start = time.perf_counter()
    with out_of_memory_as_error(set_name, settings):
        trainer.train()
    train_seconds = time.perf_counter() - train_start
    shutil.rmtree(stage / "trainer", ignore_errors=True)  # the Trainer's output_dir: nothing is saved mid-run
    trained = trainer.model
    if settings.method == "lora":
        trained.save_pretrained(stage / "adapter")
        trained = trained.merge_and_unload()
    export_student(trained, tokenizer, settings, stage, force_hf=settings.method == "full")
    tokens = int(trainer.state.num_input_tokens_seen)
    return {
        "set": set_name,
        "inputs": {str(path): file_hash(path) for path in inputs},
        "settings": dataclasses.asdict(settings),
        "base": identity,
        "seed": settings.seed,
        "steps": trainer.state.global_step,
        "examples": len(examples),
        "train_tokens": tokens,
        "train_seconds": round(train_seconds, 3),
        "seconds": round(time.perf_counter() - start, 3),
        "tokens_per_second": round(tokens / train_seconds, 2) if train_seconds > 0 else None,
        "first_loss": losses.rows[0]["loss"] if losses.rows else None,
        "final_loss": losses.rows[-1]["loss"] if losses.rows else None,
        "libraries": library_versions(),
    }


def export_base(out_dir: str | os.PathLike, raw_settings: dict, cache_dir: str | os.PathLike | None = None) -> dict:
    """The untrained base through the students' export path into `out_dir`; returns the train.json record."""
    settings = FinetuneSettings.from_dict(raw_settings)
    key = student_key(settings, [])
    with cached_student(out_dir, key, cache_dir) as stage:
        if stage is None:
            return json.loads((Path(out_dir) / "train.json").read_text(encoding="utf-8"))
        start = time.perf_counter()
        model, tokenizer = load_base(settings.base, cache_dir)
        export_student(model, tokenizer, settings, stage)
        record = {
            "set": "base",
            "key": key,
            "settings": dataclasses.asdict(settings),
            "base": base_identity(settings.base, model),
            "steps": 0,
            "seconds": round(time.perf_counter() - start, 3),
            "libraries": library_versions(),
        }
        write_json(stage / "train.json", record)
    log.info("set=base training_steps=0")
    return record


def export_student(model, tokenizer, settings: FinetuneSettings, stage: Path, force_hf: bool = False) -> None:
    """Write the merged model as `student.gguf` (export: gguf) and/or an HF `model/` (export: hf, or full training)."""
    if settings.export == "hf" or force_hf:
        model.save_pretrained(stage / "model")
        tokenizer.save_pretrained(stage / "model")
    if settings.export == "gguf":
        export_gguf(model, Path(settings.base["gguf"]), stage / "student.gguf", settings.gguf_type)
