"""The study config, typed: one pydantic model per section (and per engine, in polyfuse.engines.spec), each key's
type, default and bounds once.

`load_config` validates a config dict, fills in the defaults and runs the checks that span sections (every name a
config uses must exist: `polyfuse.config`). Any problem is one `PolyfuseError` line naming the dotted key. The JSON
schema in `workflow/schemas/config.schema.yaml` is generated from these models (`python -m polyfuse.settings`), and a
test fails when the committed copy differs. Imports stay light: no engine backend, pandas or plotting library.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from polyfuse import methods
from polyfuse.aggregators import AGGREGATORS
from polyfuse.data import LOADERS
from polyfuse.engines.spec import ENGINE_KEYS, ENGINE_MODELS, HubFile, LlamaCppModel, Model, OpenAIModel, VllmModel
from polyfuse.errors import PolyfuseError
from polyfuse.finetune import FinetuneSettings, LoraSettings
from polyfuse.fuse import FALLBACKS
from polyfuse.languages import LANGUAGE_NAMES
from polyfuse.selectors import MBR_UTILITIES, TOURNAMENT_SCORINGS, ZOO_SELECTORS
from polyfuse.tasks import TASK_KINDS
from polyfuse.typed import NULL_KEY, Distinct, Number, Positive, Section, one_of

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"


class DatasetHub(HubFile):
    revision: str | None = None
    locales: dict[str, str] | None = None


class Dataset(Section):
    format: one_of(LOADERS)
    path: str | None = Field(None)
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
    )

    @model_validator(mode="after")
    def _one_system(self):
        if (self.model is None) == (self.file is None):
            raise ValueError("give exactly one of model or file")
        return self


class Task(Section):
    kind: one_of(TASK_KINDS)
    languages: Distinct[list[one_of(LANGUAGE_NAMES)]] = Field(min_length=1)
    dataset: Dataset
    role: Literal["test", "train"] = Field(
        "test",
    )
    shots: int = Field(0, ge=0)
    max_items: Positive | None = None
    max_tokens: Positive | None = None
    samplers: list[str] | None = Field(None, min_length=1)
    fusors: list[str] | None = None
    reference: Reference | None = None


class Study(Section):
    samplers: list[str] = Field(min_length=1)
    n: Positive = 5
    seed: int = 1234
    temperature: Number = Field(0.7, ge=0)
    top_p: Number = Field(0.95, gt=0, le=1)
    selectors: list[str] = ["mbr_chrf"]
    scorer_models: dict[str, str] = Field({})
    loglik_normalization: Literal["mean", "sum"] = Field("mean")
    fusors: list[str] = []


class PoolMember(Section):
    model: str
    n: Positive = 1
    temperature: Number | None = Field(None, ge=0)


class Pool(Section):
    temperature: Number | None = Field(None, ge=0)
    members: list[PoolMember] = Field(min_length=1)


class DistillSet(Section):
    pool: str
    method: str
    label: str | None = Field(None)


class Student(Section):
    model: str
    n_ctx: int = Field(2048, ge=256)
    temperature: Number = Field(0.0, ge=0)


class Lora(Section):
    defaults_from = LoraSettings
    r: Positive | None = None
    alpha: Number | None = Field(None, gt=0)
    dropout: Number | None = Field(None, ge=0, le=1)
    target_modules: Any = Field(None)


class FinetuneResources(Section):
    gpu: int = Field(0, ge=0)
    mem_mb: Positive = 8000
    runtime: Positive = 60


class Finetune(Section):
    """The student fine-tune; its defaults are the library's (polyfuse/finetune.py), read there and in the docs."""

    nullable = frozenset({"max_steps"})
    defaults_from = FinetuneSettings
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
    resources: FinetuneResources = Field(FinetuneResources())


class Distill(Section):
    """The synthetic-data setting: SFT sets from aggregated pools of the role-train tasks, a student fine-tuned on
    each, evaluated on test tasks."""

    sets: dict[str, DistillSet] = Field(min_length=1)
    compare: list[str] = Field(min_length=2, max_length=2)
    evaluate: list[str] = Field(min_length=1)
    student: Student
    finetune: Finetune = Finetune()


class Injections(Section):
    kinds: list[one_of(methods.INJECTIONS)] = []
    k: list[Positive] = Field([])


class FusorChoice(Section):
    """Fusor choice and size: the analysed pools fused by each model, and BoN-selected with it as the scorer."""

    models: Distinct[list[str]] = Field(min_length=2)
    scorer: Literal["loglik", "llm_judge_pointwise"] = "loglik"


class Analyses(Section):
    """The paper's analyses, on pools the study already sampled (derived pools: subsets, injections, orders)."""

    cells: dict[str, Annotated[list[str], Field(min_length=1)]] = Field(min_length=1)
    samplers: list[str] | None = Field(None)
    sizes: list[Annotated[int, Field(ge=2)]] = Field([])
    subsets: Positive = Field(3)
    injections: Injections = Injections()
    orders: list[one_of(methods.ORDERS)] = Field([])
    fusors: FusorChoice | None = None


class Fusion(Section):
    template: str = "paper"
    temperature: Number = Field(0.3, ge=0)
    top_p: Number = Field(0.95, gt=0, le=1)
    max_tokens: Positive = 384
    fallback: one_of(FALLBACKS) = "first"


class GenSelectSettings(Section):
    window: int = Field(8, ge=2)


class SelfMoaSeq(Section):
    window: int = Field(3, ge=2)
    step: Positive = 2


class Rsa(Section):
    population: Positive = 4
    subset: int = Field(2, ge=2)
    rounds: Positive = 2


class RoundRobin(Section):
    scoring: one_of(TOURNAMENT_SCORINGS) = "wins"


class MbrJudge(Section):
    utility: one_of(MBR_UTILITIES) = "pointwise"
    self_pair: bool = False
    template: str = "pointwise_reference"


class MbrComet(Section):
    self_pair: bool = False


class Zoo(Section):
    """The method zoo: more selection and aggregation methods on the study samplers' pools of `cells`."""

    cells: dict[str, Annotated[Distinct[list[str]], Field(min_length=1)]] | None = Field(None, min_length=1)
    model: str
    models: dict[str, str] = Field({})
    selectors: Distinct[list[one_of(ZOO_SELECTORS)]] = []
    aggregators: Distinct[list[one_of([name for name in AGGREGATORS if name != methods.PAPER_AGGREGATOR])]] = []
    temperature: Number = Field(0.0, ge=0)
    max_tokens: Positive = 256
    seed: int = 0
    genselect: GenSelectSettings = GenSelectSettings()
    self_moa_seq: SelfMoaSeq = SelfMoaSeq()
    rsa: Rsa = Rsa()
    round_robin: RoundRobin = RoundRobin()
    mbr_judge: MbrJudge = MbrJudge()
    mbr_comet: MbrComet = MbrComet()


class Slurm(Section):
    """The SLURM partitions of jobs (profiles/slurm): a job that asks for a GPU goes to gpu_partition, any other to
    cpu_partition."""

    cpu_partition: str = "cpu"
    gpu_partition: str = "gpu"


class Comet(Section):
    nullable = frozenset({"model"})
    model: str | None = Field("Unbabel/wmt22-comet-da")
    batch_size: Positive = 8
    gpus: int = Field(0, ge=0)
    mem_mb: Positive = 16000
    oracle: bool = Field(False)


class RewardModel(Section):
    nullable = kept_nulls = frozenset({"dtype"})
    model: str = Field(
        "Skywork/Skywork-Reward-V2-Qwen3-0.6B",
    )
    device: str = "auto"
    batch_size: Positive = 8
    max_length: int = Field(4096, ge=16)
    dtype: str | None = None
    gpus: int = Field(0, ge=0)
    mem_mb: Positive = 16000


class Judge(Section):
    model: str | None = Field(None)
    template: str = "arena"
    pointwise_template: str = "pointwise"
    mode: Literal["generate", "loglik", "calibrated"] = Field(
        "generate",
    )
    tie_band: Number = Field(0.02, ge=0, le=0.5)
    temperature: Number = Field(0.0, ge=0)
    max_tokens: Positive = 256
    seed: int = 0


class Report(Section):
    bootstrap: int = Field(1000, ge=10)
    confidence: Number = Field(0.95, gt=0, lt=1)
    seed: int = 0


class Throughput(Section):
    """A model's tokens per second on the hardware a run will use: prompt tokens read, completion tokens written."""

    prompt: Number = Field(gt=0)
    completion: Number = Field(gt=0)


class Price(Section):
    """An API model's price per million tokens, in `forecast.currency`."""

    input: Number = Field(ge=0)
    output: Number = Field(ge=0)


class Forecast(Section):
    """What `python -m polyfuse.forecast` cannot measure on the machine at hand: each model's throughput where the
    run will go (its seconds then come from these, not from a probe), and the prices of the API models."""

    throughput: dict[str, Throughput] = Field({})
    prices: dict[str, Price] = Field({})
    currency: str = "USD"


class StudyConfig(Section):
    """polyfuse study configuration (documented key by key in config/README.md)."""

    cache_dir: str = Field("results/cache")
    threads: Positive = Field(2)
    models: dict[str, Model] = Field(min_length=1)
    tasks: dict[str, Task] = Field(min_length=1)
    study: Study
    pools: dict[str, Pool] = Field(
        {},
    )
    distill: Distill | None = None
    analyses: Analyses | None = None
    train_python: str = Field(
        ".venv-train/bin/python",
    )
    fusion: Fusion = Fusion()
    zoo: Zoo | None = None
    slurm: Slurm = Slurm()
    torch_python: str = Field(
        ".venv-comet/bin/python",
    )
    comet: Comet = Comet()
    reward_model: RewardModel = RewardModel()
    judge: Judge = Judge()
    report: Report = Report()
    forecast: Forecast = Forecast()


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
    for section, name, meaning in documented_keys():  # each key's meaning, as config/README.md gives it
        definition = schema if section is StudyConfig else schema["$defs"][section.__name__]
        definition["properties"][name]["description"] = meaning
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def key_docs() -> dict[str, list[dict]]:
    """config_keys.yaml: each README table's rows (keys, meaning, a default no model holds), every table there."""
    import yaml

    docs = yaml.safe_load(DOCS_PATH.read_text(encoding="utf-8"))
    if set(docs) != set(TABLES):
        raise PolyfuseError(f"{DOCS_PATH.name}: tables {sorted(docs)}, expected {sorted(TABLES)}")
    return docs


def documented_keys() -> list[tuple[type[Section], str, str]]:
    """(declaring section, key, meaning) of every key config_keys.yaml documents."""
    docs = key_docs()
    return [
        (section, name, row["meaning"])
        for table, rows in docs.items()
        for row in rows
        for key in row["keys"]
        for section, name, _ in [field_of(TABLES[table], key)]
    ]


def all_sections(cls: type[Section]) -> list[type[Section]]:
    return [cls, *(section for sub in cls.__subclasses__() for section in all_sections(sub))]


def schema_text() -> str:
    import yaml

    header = (
        "# Generated by `python -m polyfuse.settings` from the typed models (polyfuse/settings.py, polyfuse/engines/"
        "spec.py) and the keys' meanings (polyfuse/config_keys.yaml): edit those, not this file.\n"
    )
    return header + yaml.safe_dump(json_schema(), sort_keys=False, allow_unicode=True, width=120)


# config/README.md's key tables: each row's keys (their defaults from the models) and its meaning (config_keys.yaml)
DOCS_PATH = Path(__file__).with_name("config_keys.yaml")
README_PATH = SCHEMA_PATH.parents[2] / "config/README.md"
TABLES = {
    "top": StudyConfig,
    "models": LlamaCppModel,
    "models.openai": OpenAIModel,
    "models.vllm": VllmModel,
    "tasks": Task,
    "study": Study,
    "pools": Pool,
    "distill": Distill,
    "analyses": Analyses,
    "fusion": Fusion,
    "zoo": Zoo,
    "judge": Judge,
    "comet": Comet,
    "reward_model": RewardModel,
    "report": Report,
    "forecast": Forecast,
}


def section_of(annotation) -> type[Section]:
    """The section a field holds: itself, or the value of its optional, annotated or name-keyed form."""
    while True:
        if isinstance(annotation, type) and issubclass(annotation, Section):
            return annotation
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = args[-1] if typing.get_origin(annotation) is dict else args[0]


def field_of(section: type[Section], dotted: str):
    """(the section that declares it, its field) of a dotted key; `<set>` stands for any name of a keyed section."""
    *path, name = [part for part in dotted.split(".") if not part.startswith("<")]
    for part in path:
        section = section_of(section.model_fields[part].annotation)
    return section, name, section.model_fields[name]


def flow(value) -> str:
    """A default as YAML's flow style writes it."""
    import yaml

    return (
        yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)
        .strip()
        .removesuffix("\n...")
        .removesuffix("...")
        .strip()
    )


def default_text(section: type[Section], name: str, field) -> str | None:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None and section.defaults_from is not None:  # a section whose defaults another class holds
        value = section.defaults_from.__dataclass_fields__[name].default
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
    if value is None:
        return "`null`" if name in section.kept_nulls else None
    if isinstance(value, Section):
        value = value.model_dump()
    return f"`{flow(value)}`"


def kind_max_tokens() -> str:
    return ", ".join(f"{name} {kind.max_tokens}" for name, kind in TASK_KINDS.items())


def key_tables() -> dict[str, str]:
    """Each README key table in Markdown, by name."""
    docs = key_docs()
    tables = {}
    for table, section in TABLES.items():
        rows = ["| key | default | meaning |", "|---|---|---|"]
        for row in docs[table]:
            defaults = [default_text(*field_of(section, key)) for key in row["keys"]]
            if "default" in row:  # a default no model holds as a value: another key's, or the model's own
                default = row["default"].format(kind_max_tokens=kind_max_tokens())
            else:
                default = ", ".join(text or "none" for text in defaults)
            keys = ", ".join(f"`{key}`" for key in row["keys"])
            rows.append(f"| {keys} | {default} | {row['meaning']} |")
        tables[table] = "\n".join(rows) + "\n"
    return tables


KEYS_BLOCK = re.compile(r"(<!-- keys: (?P<name>[\w.]+) [^>]*-->\n)(?P<table>.*?)(<!-- /keys -->)", re.S)


def readme_text(current: str) -> str:
    """config/README.md with every key table between its markers generated anew."""
    tables = key_tables()
    found = [match["name"] for match in KEYS_BLOCK.finditer(current)]
    if sorted(found) != sorted(tables):
        raise PolyfuseError(f"{README_PATH}: key tables {sorted(found)}, expected {sorted(tables)}")
    return KEYS_BLOCK.sub(lambda match: match[1] + tables[match["name"]] + match[4], current)


if __name__ == "__main__":  # python -m polyfuse.settings: write the generated schema and README key tables
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    README_PATH.write_text(readme_text(README_PATH.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH} and the key tables of {README_PATH}")
    sys.exit(0)
