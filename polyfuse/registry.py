"""One registry for every pluggable kind: engines, scorers, dataset loaders, analyses and the CLI's steps.

A registry maps a name to its plug-in; `register(name)` is the decorator that adds one (and, where the kind keeps
its own name, sets it on the class). Two plug-ins under one name are an error at import, never a silent swap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Registry(dict[str, T]):
    """The plug-ins of one kind, by name."""

    def __init__(self, kind: str, name_attribute: str | None = None):
        super().__init__()
        self.kind = kind
        self.name_attribute = name_attribute  # the attribute a registered class keeps its name in, if any

    def register(self, name: str) -> Callable[[T], T]:
        def add(plugin: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice: {self[name]!r} and {plugin!r}")
            if self.name_attribute:
                setattr(plugin, self.name_attribute, name)
            self[name] = plugin
            return plugin

        return add
