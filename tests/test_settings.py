"""The typed config (polyfuse/settings.py), in-process: each bad config is one line naming its key, in milliseconds.

The snakemake wiring of the same errors (a "config: " prefix, no traceback, nothing written) is tested in
test_workflow with a few of these cases.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from polyfuse import settings
from polyfuse.config import finetune_settings
from polyfuse.errors import PolyfuseError
from polyfuse.settings import README_PATH, SCHEMA_PATH, load_config, readme_text, schema_text
from polyfuse.typed import Section

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())
DEFAULT_DISTILL = DEFAULT["distill"]
DEFAULT_STUDY = DEFAULT["study"]
DEFAULT_MODELS = DEFAULT["models"]
DEFAULT_TASKS = DEFAULT["tasks"]
DEFAULT_ANALYSES = DEFAULT["analyses"]
ARENA_WITHOUT_REFERENCE = {key: value for key, value in DEFAULT_TASKS["arena"].items() if key != "reference"}
SHIPPED = ["config/config.yaml", "config/paper.yaml", "config/evidence.yaml", ".test/config.yaml"]


def parse(config: dict) -> dict:
    """What the workflow does with a config at parse time (workflow/rules/common.smk), in-process."""
    try:
        config = load_config(config)
        if "distill" in config:
            finetune_settings(config)
        return config
    except PolyfuseError as exc:
        raise PolyfuseError(f"config: {exc}") from None


def rejection(config: dict) -> str:
    with pytest.raises(PolyfuseError) as caught:
        parse(yaml.safe_load(yaml.safe_dump(config)))  # as a config file: its sections sorted, as a user's may be
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "override, message",
    [
        ({"threads": "two"}, "config: threads: 'two' is not of type 'integer'"),
        (
            {"models": {**DEFAULT_MODELS, "smol": {**DEFAULT_MODELS["smol"], "n_ctx": "big"}}},
            "config: models.smol.n_ctx: 'big' is not of type 'integer'",
        ),
        ({"studdy": {}}, "config: (top level): Additional properties are not allowed ('studdy' was unexpected)"),
        ({"study": {"samplers": ["smol"], "n": 0}}, "config: study.n: 0 is less than the minimum of 1"),
        (
            {"distill": {**DEFAULT_DISTILL, "evaluate": ["poetry"]}},
            "config: distill.evaluate: unknown 'poetry'; known: arena, mgsm, wmt24pp",
        ),
        (
            # the base student's GGUF is located at parse time; other models' files when their job loads them
            {"models": {**DEFAULT_MODELS, "smol": {"engine": "llamacpp", "path": "nope.gguf", "prompt_style": "chat"}}},
            "config: model 'smol': GGUF file not found: nope.gguf",
        ),
        (
            {"tasks": {**DEFAULT_TASKS, "arena": ARENA_WITHOUT_REFERENCE}},
            "config: tasks.arena.reference: a chat task needs a reference system ({model: ...} or {file: ...})",
        ),
        (
            {
                "models": {**DEFAULT_MODELS, "tiny": {**DEFAULT_MODELS["smol"], "n_ctx": 256}},
                "analyses": {**DEFAULT_ANALYSES, "fusors": {"models": ["tiny", "gemma270m"]}},
            },
            "config: models.tiny.n_ctx: 256 tokens cannot hold 'gemma270m''s 5 candidates of tasks.wmt24pp.max_tokens",
        ),
        ({"study": {"samplers": ["gpt9"]}}, "config: study.samplers: unknown 'gpt9'; known: gemma270m, smol"),
        ({"study": {"samplers": ["smol"], "selectors": ["vibes"]}}, "config: study.selectors: unknown 'vibes'"),
        (
            {"tasks": {"wmt": {"kind": "poetry", "languages": ["de"], "dataset": {"format": "wmt24pp", "path": "x"}}}},
            "config: tasks.wmt.kind: unknown 'poetry'",
        ),
        (
            {
                "tasks": {
                    "wmt": {"kind": "translation", "languages": ["xx"], "dataset": {"format": "wmt24pp", "path": "x"}}
                }
            },
            "config: tasks.wmt.languages: unknown 'xx'",
        ),
        (
            {"models": {"m": {"engine": "tgi", "prompt_style": "chat"}}, "study": {"samplers": ["m"]}},
            "config: models.m.engine: unknown 'tgi'",
        ),
        (
            {
                "study": {
                    "samplers": ["gemma270m"],
                    "fusors": ["gemma270m"],
                    "n": 80,
                    **{key: DEFAULT_STUDY[key] for key in ("selectors", "scorer_models")},  # the sets' BoN
                }
            },
            "config: models.smol.n_ctx: 4096 tokens cannot hold study.n=80 candidates of tasks.arena.max_tokens",
        ),
        (
            {"pools": {"teachers": {"members": [{"model": "smol"}, {"model": "gpt9"}]}}},
            "config: pools.teachers.members[1]: unknown model 'gpt9'",
        ),
        (
            {"pools": {"teachers": {"members": [{"model": "smol"}, {"model": "smol", "n": 2}]}}},
            "config: pools.teachers.members[1]: same model 'smol' and temperature 0.7 as members[0]",
        ),
        (
            {
                "pools": {"teachers": {"members": [{"model": "smol"}]}},
                "distill": {
                    "sets": {"fusion": {"pool": "teachers", "method": "fusion-gpt9"}},
                    "compare": ["fusion", "fusion"],
                    "evaluate": ["arena"],
                    "student": {"model": "smol"},
                },
            },
            "config: distill.sets.fusion.method (its fusor): unknown 'gpt9'",
        ),
        (
            {
                "pools": {"teachers": {"members": [{"model": "smol"}]}},
                "distill": {
                    "sets": {"base": {"pool": "teachers", "method": "single"}},
                    "compare": ["base", "base"],
                    "evaluate": ["arena"],
                    "student": {"model": "smol"},
                },
            },
            "config: distill.sets.base: a set name is letters, digits and '_', and not 'base'",
        ),
        (
            {"distill": {**DEFAULT_DISTILL, "compare": ["fusion", "bon"]}},
            "config: distill.compare: [a bon-* set, a fusion-* set], got ['fusion', 'bon']",
        ),
    ],
)
def test_bad_config_is_rejected_naming_its_key(override, message):
    config = copy.deepcopy(DEFAULT)
    config.update(copy.deepcopy(override))
    assert message in rejection(config)


@pytest.mark.parametrize(
    "where, key",
    [
        (("models", "gemma270m"), "n_cxt"),
        (("models", "smol", "resources"), "gpus"),
        (("tasks", "wmt24pp"), "shot"),
        (("distill", "finetune"), "batchsize"),
        (("pools", "teachers"), "temprature"),
    ],
)
def test_a_misspelled_key_is_an_error_naming_it(where, key):
    config = copy.deepcopy(DEFAULT)
    section = config
    for name in where:
        section = section.setdefault(name, {})
    section[key] = 1
    expected = f"config: {'.'.join(where)}: Additional properties are not allowed ('{key}' was unexpected)"
    assert expected in rejection(config)


@pytest.mark.parametrize(
    ("model", "key", "engine"), [("gemma270m", "max_model_len", "llamacpp"), ("smol", "base_url", "llamacpp")]
)
def test_a_key_of_another_engine_is_an_error_naming_it(model, key, engine):
    """Each engine takes only its own keys, so a vLLM key on llama.cpp is an error, not a no-op."""
    config = copy.deepcopy(DEFAULT)
    config["models"][model][key] = 2048 if key == "max_model_len" else "http://localhost:1"
    expected = f"config: models.{model}.{key}: not a key of engine '{engine}' (its keys: hub, loglik_n_ctx, n_batch"
    assert expected in rejection(config)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"judge": {"model": "api", "mode": "calibrated"}}, "config: judge.mode: calibrated needs summed token"),
        (
            {
                "study": {
                    "samplers": ["gemma270m"],
                    "selectors": ["loglik"],
                    "scorer_models": {"loglik": "api"},
                    "loglik_normalization": "sum",
                }
            },
            "config: study.loglik_normalization: sum needs summed token",
        ),
    ],
)
def test_settings_an_openai_model_cannot_serve_are_rejected(setting, message):
    config = copy.deepcopy(DEFAULT)
    config["models"]["api"] = {"engine": "openai", "prompt_style": "fewshot", "base_url": "http://127.0.0.1:9"}
    for section, values in setting.items():
        config[section] |= values
    message_seen = rejection(config)
    assert message in message_seen and "model 'api' on the openai engine" in message_seen


@pytest.mark.parametrize(
    "override, message",
    [
        (
            {"study": {"samplers": ["smol"], "temperature": -1}},
            "config: study.temperature: -1 is less than the minimum of 0",
        ),
        ({"study": {"samplers": ["smol"], "top_p": 1.5}}, "config: study.top_p: 1.5 is greater than the maximum of 1"),
        ({"study": {"n": 3}}, "config: study: 'samplers' is a required property"),
        ({"fusion": {"fallback": "guess"}}, "config: fusion.fallback: unknown 'guess'; known: empty, first, raw"),
        ({"models": {"m": {"prompt_style": "chat"}}}, "config: models.m: 'engine' is a required property"),
        (
            {"models": {**DEFAULT_MODELS, "smol": {**DEFAULT_MODELS["smol"], "prompt_style": "zero-shot"}}},
            "config: models.smol.prompt_style: unknown 'zero-shot'; known: chat, fewshot",
        ),
        (
            {"tasks": {**DEFAULT_TASKS, "mgsm": {**DEFAULT_TASKS["mgsm"], "languages": ["de", "de"]}}},
            "config: tasks.mgsm.languages: ['de', 'de'] lists 'de' twice",
        ),
        (
            {"tasks": {**DEFAULT_TASKS, "mgsm": {**DEFAULT_TASKS["mgsm"], "dataset": {"format": "mgsm"}}}},
            "config: tasks.mgsm.dataset: give exactly one of path, files or hub, got none",
        ),
        (
            {"analyses": {**DEFAULT_ANALYSES, "orders": ["sideways"]}},
            "config: analyses.orders: unknown 'sideways'; known: best-first, pooled, random, worst-first",
        ),
        ({"distill": {**DEFAULT_DISTILL, "compare": ["bon"]}}, "config: distill.compare: ['bon'] is too short"),
    ],
)
def test_each_key_is_checked_by_its_typed_section(override, message):
    # the checks the typed sections took over from the JSON schema and the name checks: types, bounds, enums,
    # required keys and one-of choices
    config = copy.deepcopy(DEFAULT)
    config.update(copy.deepcopy(override))
    assert message in rejection(config)


@pytest.mark.parametrize(
    "where, key",
    [
        ((), "distill"),
        (("tasks", "wmt24pp"), "fusors"),
        (("models", "gemma270m"), "n_ctx"),
        (("pools", "teachers"), "temperature"),
    ],
)
def test_a_key_left_empty_is_an_error_not_its_default(where, key):
    # YAML reads `key:` with nothing after it as null: the code reading the key would get None, not the default
    config = copy.deepcopy(DEFAULT)
    section = config
    for name in where:
        section = section[name]
    section[key] = None
    expected = f"config: {'.'.join([*where, key])}: null is not a value of this key; leave the key out for its default"
    assert expected in rejection(config)
    # the keys whose null is a value keep it
    assert parse(copy.deepcopy(DEFAULT) | {"reward_model": {"dtype": None}})["reward_model"]["dtype"] is None


def test_the_committed_schema_is_the_one_the_models_generate():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), "run: python -m polyfuse.settings"


def test_the_readmes_key_tables_are_the_ones_the_models_and_their_meanings_generate():
    committed = README_PATH.read_text(encoding="utf-8")
    assert committed == readme_text(committed), "run: python -m polyfuse.settings"
    # a default comes from the model: change one, and its row changes
    table = settings.key_tables()["fusion"]
    assert "| `max_tokens` | `384` |" in table and "| `fallback` | `first` |" in table
    assert "| `n_ctx` | `4096` |" in settings.key_tables()["models"]


def test_every_key_of_every_section_is_documented():
    documented = {(section.__name__, name) for section, name, _ in settings.documented_keys()}

    def is_documented(section: type[Section], name: str) -> bool:
        declared = [cls.__name__ for cls in section.__mro__ if name in getattr(cls, "__annotations__", {})]
        return any((cls.__name__, name) in documented for cls in section.__mro__) or any(
            (owner, name) in documented for owner in declared
        )

    missing = []
    for table, section in settings.TABLES.items():
        for name, field in section.model_fields.items():
            if is_documented(section, name) or (table == "top" and name in settings.TABLES):
                continue
            try:  # a section shown key by key (dataset.format, sets.<set>.pool, ...)
                inner = settings.section_of(field.annotation)
            except (IndexError, TypeError):
                inner = None
            if inner is None or not all(is_documented(inner, key) for key in inner.model_fields):
                missing.append(f"{table}.{name}")
    # the engines' shared keys are documented once, in the first model table
    shared = {
        f"models.{engine}.{key}" for engine in ("openai", "vllm") for key in ("engine", "prompt_style", "resources")
    }
    assert sorted(set(missing) - shared) == []


@pytest.mark.parametrize("path", SHIPPED)
def test_the_generated_schema_accepts_every_shipped_config_and_rejects_a_stray_key(path):
    schema = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    config = yaml.safe_load((REPO / path).read_text())
    jsonschema.validate(config, schema)
    with pytest.raises(jsonschema.ValidationError, match="'studdy' was unexpected"):
        jsonschema.validate({**config, "studdy": {}}, schema)
    assert parse(config)["models"]  # and the typed loader, with its cross-section checks, takes it too


def test_defaults_are_filled_in_and_an_absent_optional_key_stays_absent():
    config = parse(copy.deepcopy(DEFAULT))
    assert config["fusion"]["fallback"] == "first" and config["report"]["bootstrap"] == 1000
    assert config["judge"]["tie_band"] == 0.02 and config["comet"]["mem_mb"] == 16000
    assert config["pools"]["teachers"]["members"][0] == {"model": "smol", "n": 1}  # its temperature: the pool's
    assert "max_items" not in config["tasks"]["ufb"] or config["tasks"]["ufb"]["max_items"] == 6
    assert "n_batch" not in config["models"]["smol"] and "samplers" not in config["tasks"]["wmt24pp"]
    assert config["reward_model"]["dtype"] is None  # a null default is a value
    # a number keeps its type: an int epoch count hashes (the student's cache key) as it did
    assert config["distill"]["finetune"]["epochs"] == 2 and isinstance(config["distill"]["finetune"]["epochs"], int)
    explicit = copy.deepcopy(DEFAULT) | {"comet": {"model": None}}
    assert parse(explicit)["comet"]["model"] is None  # null leaves COMET out: kept, not replaced by the default


def test_a_config_that_is_not_a_mapping_is_one_line():
    with pytest.raises(PolyfuseError, match=r"^\(top level\): a config is a mapping of sections, got list$"):
        load_config(["a list"])


def test_a_loaded_config_keeps_the_files_key_order_with_defaults_after():
    # a job's params (a task's settings) read as before, so Snakemake's params trigger re-runs no finished study
    config = parse(copy.deepcopy(DEFAULT))
    task = config["tasks"]["wmt24pp"]
    assert list(task) == [*DEFAULT_TASKS["wmt24pp"], "role"]
    assert list(config)[: len(DEFAULT)] == list(DEFAULT)
