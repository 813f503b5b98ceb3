"""Each engine's model keys, typed: their types, bounds and defaults, once.

The study config reads a model through these (polyfuse.settings), and each engine reads its defaults from here
(`Engine.option`), so a default lives in one place. A config keeps a model as written: a default is not written
into it, so a job's params (and so Snakemake's re-run triggers) do not change when a default is documented.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_serializer

from polyfuse.engines import BACKEND_MODULES
from polyfuse.tasks import PROMPT_STYLES
from polyfuse.typed import Number, Positive, Section, one_of


class HubFile(Section):
    repo: str
    filename: str


class PartPackages(Section):
    """A GGUF shipped as slices in numbered packages (`package` with {k} = 1 … `count`), joined in order."""

    package: str = Field(pattern=r"\{k\}")
    count: Positive
    file: str = Field(pattern=r"^[^/\\]+\.gguf$")
    size: Positive
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


class Resources(Section):
    """What a job asks a cluster for (profiles/slurm): gpu, mem_mb, runtime in minutes."""

    gpu: int | None = Field(None, ge=0)
    mem_mb: Positive | None = None
    runtime: Positive | None = None


class ModelBase(Section):
    prompt_style: one_of(PROMPT_STYLES)
    resources: Resources | None = Field(None)

    @model_serializer(mode="wrap")
    def _as_written(self, handler):
        # A model stays as the config wrote it: its engine reads the defaults (Engine.option), and a job's params
        # (its model's spec) do not change when a default is documented here.
        return {key: value for key, value in handler(self).items() if key in self.model_fields_set}

    @classmethod
    def default(cls, key: str):
        """The default of one of this engine's keys: what an engine reads when a model does not set it."""
        return cls.model_fields[key].default


class LlamaCppModel(ModelBase):
    engine: Literal["llamacpp"]
    path: str | None = None
    package: str | None = None
    parts: PartPackages | None = None
    hub: HubFile | None = None
    n_ctx: int = Field(4096, ge=256)
    loglik_n_ctx: int = Field(1024, ge=256)
    n_batch: Positive = Field(512)


class OpenAIModel(ModelBase):
    engine: Literal["openai"]
    model: str | None = Field(None)
    base_url: str | None = None
    base_urls: list[str] | None = Field(None, min_length=1)
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: Positive = 8
    max_retries: int = Field(6, ge=0)
    backoff_seconds: Number = Field(1.0, ge=0)
    backoff_max_seconds: Number = Field(60.0, ge=0)
    timeout_seconds: Number = Field(300, gt=0)
    revision: str | None = None


class VllmModel(ModelBase):
    engine: Literal["vllm"]
    path: str | None = None
    revision: str | None = None
    tensor_parallel_size: Positive = 1
    gpu_memory_utilization: Number = Field(0.9, gt=0, le=1)
    max_model_len: Positive | None = Field(None)
    dtype: str = "auto"
    enforce_eager: bool = False
    batch_items: Positive = 256


ENGINE_MODELS: dict[str, type[ModelBase]] = {"llamacpp": LlamaCppModel, "openai": OpenAIModel, "vllm": VllmModel}
assert set(ENGINE_MODELS) == set(BACKEND_MODULES), "every engine backend has its typed model keys"
# engine name -> the model keys it reads besides engine, prompt_style and resources
ENGINE_KEYS = {
    engine: frozenset(model.model_fields) - set(ModelBase.model_fields) - {"engine"}
    for engine, model in ENGINE_MODELS.items()
}
# engine name -> the model key that sets its context window (its default: the engine's; None, the model's own)
CONTEXT_KEYS = {"llamacpp": "n_ctx", "vllm": "max_model_len"}
Model = Annotated[LlamaCppModel | OpenAIModel | VllmModel, Field(discriminator="engine")]
