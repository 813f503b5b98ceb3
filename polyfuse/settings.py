"""The study config, typed: one pydantic model per section and per engine, each key's type, default and bounds once.

`load_config` validates a config dict, fills in the defaults and runs the checks that span sections (every name a
config uses must exist: `polyfuse.config`). Any problem is one `PolyfuseError` line naming the dotted key. The JSON
schema in `workflow/schemas/config.schema.yaml` is generated from these models (`python -m polyfuse.settings`), and a
test fails when the committed copy differs. Imports stay light: no engine backend, pandas or plotting library.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from polyfuse import methods
from polyfuse.data import LOADERS
from polyfuse.engines.spec import ENGINE_KEYS, ENGINE_MODELS, HubFile, Model
from polyfuse.errors import PolyfuseError
from polyfuse.fuse import FALLBACKS
from polyfuse.languages import LANGUAGE_NAMES
from polyfuse.tasks import TASK_KINDS
from polyfuse.typed import NULL_KEY, Number, Positive, Section, one_of

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"


class DatasetHub(HubFile):
    revision: str | None = None
    locales: dict[str, str] | None = None


class Dataset(Section):
    format: one_of(LOADERS)
    path: str | None = Field(None, description="file path; {lang} is replaced by the language code")
    files: dict[str, str] | None = None
    hub: DatasetHub | None = None

    @model_validator(mode="after")
    def _one_source(self):
        given = [key for key in ("path", "files", "hub") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path, files or hub, got {given or 'none'}")
        return self


class Reference(Section):
    """The reference system a chat task's answers are judged against: {model: name} or {file: path with {lang}}."""

    model: str | None = None
    file: str | None = None
    temperature: Number = Field(0.0, ge=0)
    max_tokens: Positive | None = Field(
        None,
        description="the reference model's answer budget (default: the task's max_tokens); a cut answer is an error",
    )

    @model_validator(mode="after")
    def _one_system(self):
        if (self.model is None) == (self.file is None):
            raise ValueError("give exactly one of model or file")
        return self


class Task(Section):
    kind: one_of(TASK_KINDS)
    languages: list[one_of(LANGUAGE_NAMES)] = Field(min_length=1)
    dataset: Dataset
    role: Literal["test", "train"] = Field(
        "test",
        description="test: scored and reported; train: a prompt pool the synthetic-data sets are built from "
        "(distill), never scored",
    )
    shots: int = Field(0, ge=0)
    max_items: Positive | None = None
    max_tokens: Positive | None = None
    samplers: list[str] | None = Field(None, min_length=1, description="overrides study.samplers for this task")
    fusors: list[str] | None = Field(None, description="overrides study.fusors for this task")
    reference: Reference | None = None

    @model_validator(mode="after")
    def _distinct_languages(self):
        if len(set(self.languages)) != len(self.languages):
            raise ValueError(f"languages: {self.languages} lists a language twice")
        return self


class Study(Section):
    samplers: list[str] = Field(min_length=1)
    n: Positive = 5
    seed: int = 1234
    temperature: Number = Field(0.7, ge=0)
    top_p: Number = Field(0.95, gt=0, le=1)
    selectors: list[str] = ["mbr_chrf"]
    scorer_models: dict[str, str] = Field(
        {}, description="the model each model-based scorer runs, e.g. {loglik: gemma270m}"
    )
    loglik_normalization: Literal["mean", "sum"] = Field(
        "mean", description="the loglik scorer's length normalisation: mean per token, or the sum"
    )
    fusors: list[str] = []


class PoolMember(Section):
    model: str
    n: Positive = 1
    temperature: Number | None = Field(None, ge=0)


class Pool(Section):
    temperature: Number | None = Field(
        None, ge=0, description="each member's temperature unless it sets its own (default: study.temperature)"
    )
    members: list[PoolMember] = Field(min_length=1)


class DistillSet(Section):
    pool: str = Field(description="a pool (or a model) that answers the training prompts")
    method: str = Field(description="how the pool becomes one target: single, bon-<selector> or fusion-<fusor>")
    label: str | None = Field(None, description="the row's name in the teacher-pool table")


class Student(Section):
    model: str = Field(
        description="the base student: a llamacpp model under models (its GGUF is fine-tuned and exported back)"
    )
    n_ctx: int = Field(2048, ge=256)
    temperature: Number = Field(0.0, ge=0, description="students answer once: no test-time scaling")


class Lora(Section):
    r: Positive | None = None
    alpha: Number | None = Field(None, gt=0)
    dropout: Number | None = Field(None, ge=0, le=1)
    target_modules: Any = Field(None, description="all-linear or a list of module names")


class FinetuneResources(Section):
    gpu: int = Field(0, ge=0)
    mem_mb: Positive = 8000
    runtime: Positive = 60


class Finetune(Section):
    """The student fine-tune; defaults live in polyfuse/finetune.py (FinetuneSettings), documented in
    config/README.md."""

    nullable = frozenset({"max_steps"})
    method: Literal["lora", "full"] | None = None
    epochs: Number | None = Field(None, gt=0)
    max_steps: Positive | None = None
    learning_rate: Number | None = Field(None, gt=0)
    batch_size: Positive | None = None
    gradient_accumulation_steps: Positive | None = None
    max_seq_length: int | None = Field(None, ge=16)
    seed: int | None = None
    gguf_type: Literal["q8_0", "f32"] | None = None
    gradient_checkpointing: bool | None = None
    lora: Lora | None = None
    resources: FinetuneResources = Field(
        FinetuneResources(), description="what a fine-tuning job asks a cluster for: gpu, mem_mb, runtime (minutes)"
    )


class Distill(Section):
    """The synthetic-data setting: SFT sets from aggregated pools of the role-train tasks, a student fine-tuned on
    each, evaluated on test tasks."""

    sets: dict[str, DistillSet] = Field(min_length=1)
    compare: list[str] = Field(
        min_length=2, max_length=2, description="the BoN-data set and the FusioN-data set of the downstream figure"
    )
    evaluate: list[str] = Field(min_length=1, description="the test tasks the students answer")
    student: Student
    finetune: Finetune = Finetune()


class Injections(Section):
    kinds: list[one_of(methods.INJECTIONS)] = []
    k: list[Positive] = Field([], description="candidates replaced, each below the pool's size")


class FusorChoice(Section):
    """Fusor choice and size: the analysed pools fused by each model, and BoN-selected with it as the scorer."""

    models: list[str] = Field(min_length=2, description="models, smallest first")
    scorer: Literal["loglik", "llm_judge_pointwise"] = Field(
        "loglik", description="how each model scores candidates for BoN"
    )

    @model_validator(mode="after")
    def _distinct_models(self):
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models: {self.models} lists a model twice")
        return self


class Analyses(Section):
    """The paper's analyses, on pools the study already sampled (derived pools: subsets, injections, orders)."""

    cells: dict[str, Annotated[list[str], Field(min_length=1)]] = Field(
        min_length=1, description="where the analyses run: test task -> its languages"
    )
    samplers: list[str] | None = Field(
        None, description="the samplers (models or pools) analysed; default: each analysed task's own samplers"
    )
    sizes: list[Annotated[int, Field(ge=2)]] = Field(
        [], description="N-scaling: subset sizes between 1 (single) and study.n (the pool)"
    )
    subsets: Positive = Field(3, description="N-scaling: seeded random subsets per size")
    injections: Injections = Injections()
    orders: list[one_of(methods.ORDERS)] = Field(
        [], description="position bias: the orders the fusor is shown the whole pool in"
    )
    fusors: FusorChoice | None = None


class Fusion(Section):
    template: str = "paper"
    temperature: Number = Field(0.3, ge=0)
    top_p: Number = Field(0.95, gt=0, le=1)
    max_tokens: Positive = 384
    fallback: one_of(FALLBACKS) = "first"


class Slurm(Section):
    """The SLURM partitions of jobs (profiles/slurm): a job that asks for a GPU goes to gpu_partition, any other to
    cpu_partition."""

    cpu_partition: str = "cpu"
    gpu_partition: str = "gpu"


class Comet(Section):
    nullable = frozenset({"model"})
    model: str | None = Field(
        "Unbabel/wmt22-comet-da", description="a COMET model on the hub or a local checkpoint; null leaves COMET out"
    )
    batch_size: Positive = 8
    gpus: int = Field(0, ge=0)
    mem_mb: Positive = 16000
    oracle: bool = Field(False, description=f"add the oracle selected by COMET ({methods.COMET_ORACLE})")


class RewardModel(Section):
    nullable = kept_nulls = frozenset({"dtype"})
    model: str = Field(
        "Skywork/Skywork-Reward-V2-Qwen3-0.6B",
        description="a transformers sequence-classification reward model (hub name or directory)",
    )
    device: str = "auto"
    batch_size: Positive = 8
    max_length: int = Field(4096, ge=16)
    dtype: str | None = None
    gpus: int = Field(0, ge=0)
    mem_mb: Positive = 16000


class Judge(Section):
    model: str | None = Field(None, description="the judge model (a name under models)")
    template: str = "arena"
    pointwise_template: str = "pointwise"
    mode: Literal["generate", "loglik", "calibrated"] = Field(
        "generate",
        description="generate: parse the label the judge writes; loglik: the winner with the most label probability; "
        "calibrated: both orders' label probabilities combined",
    )
    tie_band: Number = Field(
        0.02, ge=0, le=0.5, description="calibrated mode: a combined win probability within 0.5 +- tie_band is a tie"
    )
    temperature: Number = Field(0.0, ge=0)
    max_tokens: Positive = 256
    seed: int = 0


class Report(Section):
    bootstrap: int = Field(1000, ge=10)
    confidence: Number = Field(0.95, gt=0, lt=1)
    seed: int = 0


class StudyConfig(Section):
    """polyfuse study configuration (documented key by key in config/README.md)."""

    cache_dir: str = Field("results/cache", description="where model outputs are cached, one SQLite file per model")
    threads: Positive = Field(2, description="threads for each model-running job")
    models: dict[str, Model] = Field(min_length=1)
    tasks: dict[str, Task] = Field(min_length=1)
    study: Study
    pools: dict[str, Pool] = Field(
        {},
        description="multi-model candidate pools: a name usable wherever a sampler is, its candidates drawn from "
        "several models",
    )
    distill: Distill | None = None
    analyses: Analyses | None = None
    train_python: str = Field(
        ".venv-train/bin/python",
        description="the interpreter of the fine-tuning rules on the pip route; conda runs use envs/train.yaml",
    )
    fusion: Fusion = Fusion()
    slurm: Slurm = Slurm()
    torch_python: str = Field(
        ".venv-comet/bin/python",
        description="the interpreter of the torch rule group (COMET, reward models) on the pip route; conda runs use "
        "envs/comet.yaml",
    )
    comet: Comet = Comet()
    reward_model: RewardModel = RewardModel()
    judge: Judge = Judge()
    report: Report = Report()


# pydantic's error types, worded as the schema checks always worded them
TYPE_NAMES = {
    "int_type": "integer",
    "float_type": "number",
    "string_type": "string",
    "bool_type": "boolean",
    "list_type": "array",
    "dict_type": "object",
    "model_type": "object",
    "model_attributes_type": "object",
}
BOUNDS = {
    "greater_than_equal": ("ge", "is less than the minimum of"),
    "greater_than": ("gt", "is less than or equal to the minimum of"),
    "less_than_equal": ("le", "is greater than the maximum of"),
    "less_than": ("lt", "is greater than or equal to the maximum of"),
}


def error_line(error: dict) -> str:
    """One validation error as `dotted.key: what is wrong`, the key a config author would look for."""
    loc = list(error["loc"])
    if len(loc) >= 3 and loc[0] == "models" and loc[2] in ENGINE_MODELS:  # the engine tag is not a key
        engine = loc.pop(2)
    else:
        engine = None
    kind, given = error["type"], error.get("input")
    if loc and loc[-1] in ("int", "float"):  # a number's two members: one message
        loc.pop()
        kind = "float_type" if kind in ("int_type", "float_type") else kind
    if kind == "extra_forbidden":
        key = loc.pop()
        if engine and any(key in keys for keys in ENGINE_KEYS.values()):
            return (
                f"{'.'.join(map(str, loc))}.{key}: not a key of engine {engine!r} "
                f"(its keys: {', '.join(sorted(ENGINE_KEYS[engine]))})"
            )
        message = f"Additional properties are not allowed ({key!r} was unexpected)"
    elif kind == "union_tag_invalid":
        loc.append("engine")
        message = f"unknown {error['ctx']['tag']!r}; known: {', '.join(sorted(ENGINE_MODELS))}"
    elif kind == "union_tag_not_found":
        message = "'engine' is a required property"
    elif kind == "literal_error":
        if loc and isinstance(loc[-1], int):  # an item of a list: its value names it
            loc.pop()
        known = error["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        message = f"unknown {given!r}; known: {', '.join(sorted(known.split(', ')))}"
    elif kind == "missing":
        message = f"{loc.pop()!r} is a required property"
    elif kind in TYPE_NAMES:
        message = f"{given!r} is not of type {TYPE_NAMES[kind]!r}"
    elif kind in BOUNDS:
        bound, wording = BOUNDS[kind]
        message = f"{given!r} {wording} {error['ctx'][bound]}"
    elif kind == "too_short":
        message = f"{given!r} should be non-empty" if error["ctx"]["min_length"] == 1 else f"{given!r} is too short"
    elif kind == "too_long":
        message = f"{given!r} is too long"
    elif kind == "value_error" and error["msg"].startswith(f"Value error, {NULL_KEY}"):
        loc.append(error["msg"].removeprefix(f"Value error, {NULL_KEY}"))
        message = "null is not a value of this key; leave the key out for its default"
    elif kind == "value_error":
        message = error["msg"].removeprefix("Value error, ")
    else:
        message = error["msg"]
    return f"{'.'.join(map(str, loc)) or '(top level)'}: {message}"


def load_config(raw: dict) -> dict:
    """The config with every default filled in, or one PolyfuseError line naming the first key that is wrong."""
    from polyfuse.config import check_config

    if not isinstance(raw, dict):
        raise PolyfuseError(f"(top level): a config is a mapping of sections, got {type(raw).__name__}")
    try:
        config = StudyConfig.model_validate(raw).model_dump()
    except ValidationError as exc:
        raise PolyfuseError(error_line(exc.errors()[0])) from None
    config = in_the_order_of(raw, config)
    check_config(config)
    return config


def in_the_order_of(raw, filled):
    """`filled` with each mapping's keys in `raw`'s order, defaults after: a job's params (a task's settings) then
    read as they always did, so Snakemake's params trigger does not re-run a finished study."""
    if isinstance(filled, dict) and isinstance(raw, dict):
        keys = [key for key in raw if key in filled] + [key for key in filled if key not in raw]
        return {key: in_the_order_of(raw.get(key), filled[key]) for key in keys}
    if isinstance(filled, list) and isinstance(raw, list) and len(raw) == len(filled):
        return [in_the_order_of(r, f) for r, f in zip(raw, filled, strict=True)]
    return filled


def json_schema() -> dict:
    """The JSON schema of a study config, as editors and `snakemake.utils.validate` read it."""
    schema = StudyConfig.model_json_schema()
    sections = {cls.__name__: cls for cls in all_sections(Section)}
    for name, definition in [("StudyConfig", schema), *schema.get("$defs", {}).items()]:
        for key, prop in definition.get("properties", {}).items():
            if key in sections[name].nullable or "anyOf" not in prop:
                continue
            # an optional key is left out, never null (see Section): its schema is its value's alone
            options = [option for option in prop["anyOf"] if option != {"type": "null"}]
            if len(options) == 1:
                rest = {field: value for field, value in prop.items() if field != "anyOf"}
                if rest.get("default", ...) is None:
                    del rest["default"]
                definition["properties"][key] = {**options[0], **rest}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def all_sections(cls: type[Section]) -> list[type[Section]]:
    return [cls, *(section for sub in cls.__subclasses__() for section in all_sections(sub))]


def schema_text() -> str:
    import yaml

    header = "# Generated from polyfuse/settings.py by `python -m polyfuse.settings`: edit the models, not this file.\n"
    return header + yaml.safe_dump(json_schema(), sort_keys=False, allow_unicode=True, width=120)


if __name__ == "__main__":  # python -m polyfuse.settings: write the generated schema
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH.relative_to(Path.cwd()) if SCHEMA_PATH.is_relative_to(Path.cwd()) else SCHEMA_PATH}")
    sys.exit(0)
