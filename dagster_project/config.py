"""Typed run configuration generated from the plain dataclasses of ml/, so each setting is
declared once (with its default and description) and the Dagster launchpad shows it."""

from __future__ import annotations

import dataclasses
import typing

from dagster import Config
from pydantic import Field


def config_class(source: type, name: str, description: str) -> type[Config]:
    """A Dagster `Config` with the fields, types, defaults and descriptions of dataclass `source`.

    `to_source(config)` turns a filled config back into the dataclass (which validates it).
    """
    hints = typing.get_type_hints(source)
    namespace: dict[str, typing.Any] = {"__annotations__": {}, "__doc__": description, "__module__": __name__}
    for spec in dataclasses.fields(source):
        namespace["__annotations__"][spec.name] = hints[spec.name]
        namespace[spec.name] = Field(default=spec.default, description=spec.metadata.get("description"))
    return type(name, (Config,), namespace)


def to_source(config: Config, source: type):
    """The dataclass `source` filled from a config made by `config_class`."""
    return source(**{spec.name: getattr(config, spec.name) for spec in dataclasses.fields(source)})
