"""The base of every typed config section (polyfuse.settings, polyfuse.engines.spec), and its shared types."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_serializer, model_validator


def one_of(names) -> Any:
    """A Literal of a registry's names, so the schema's enum is the registry's own list."""
    return Literal[tuple(names)]


Positive = Annotated[int, Field(ge=1)]


def distinct(values: list) -> list:
    repeated = next((value for i, value in enumerate(values) if value in values[:i]), None)
    if repeated is not None:
        raise ValueError(f"{values} lists {repeated!r} twice")
    return values


class Distinct:
    """A list whose entries differ: `Distinct[list[str]]`."""

    def __class_getitem__(cls, item):
        return Annotated[item, AfterValidator(distinct)]


Number = int | float  # an int stays an int (a fine-tune's epochs: 2 hashes as it did), a float a float


NULL_KEY = "null key: "  # how a null found by a section's check reaches error_line, which names the key


class Section(BaseModel):
    """A config section: unknown keys are errors, and YAML's types are taken as written ('2' is not 2)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    nullable: ClassVar[frozenset[str]] = frozenset()  # keys a config may set to null: null is a value of theirs
    kept_nulls: ClassVar[frozenset[str]] = frozenset()  # keys whose default null is a value, filled in like any
    defaults_from: ClassVar[type | None] = None  # a dataclass that holds this section's defaults (its library's)

    @model_validator(mode="before")
    @classmethod
    def _no_null_for_a_value(cls, data):
        # A key written with nothing after its colon is null in YAML: an error, not the key's default or a None
        # that the code reading it would not expect.
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None and key in cls.model_fields and key not in cls.nullable:
                    raise ValueError(f"{NULL_KEY}{key}")
        return data

    @model_serializer(mode="wrap")
    def _without_absent_keys(self, handler):
        # A key with no default that the config leaves out stays out, as the code reads it with .get(key, default).
        data = handler(self)
        return {
            key: value
            for key, value in data.items()
            if value is not None or key in self.model_fields_set | self.kept_nulls
        }
