"""Building a resource from environment variables: field ``foo_bar`` of a resource read with
prefix ``MEDIA_ASSETS_VIDEO_`` is set by ``MEDIA_ASSETS_VIDEO_FOO_BAR``.

With ``as_env_vars=True`` (the code location's resources) a ``str`` field becomes
``dg.EnvVar(name)`` and an ``int`` field ``dg.EnvVar.int(name)``: Dagster reads them in each run
worker at run time and the UI shows the variable's name, not its value. Dagster's config has no
float, bool or list environment source, so those fields (and every field with
``as_env_vars=False``) take the value now: parsed as JSON when it parses (numbers, booleans,
lists), else as a string, and validated by the resource's pydantic model, so a bad value fails
at load time with the field's name."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TypeVar

import dagster as dg

R = TypeVar("R", bound=dg.ConfigurableResource)


def resource_from_env(cls: type[R], prefix: str, environ: Mapping[str, str] | None = None, *, as_env_vars: bool = False,
                      **overrides) -> R:
    """``cls(**values)`` with each field taken from ``<prefix><FIELD NAME>`` when set (see the
    module doc for ``as_env_vars``)."""
    env = os.environ if environ is None else environ
    values = {}
    for field, info in cls.model_fields.items():
        name = prefix + field.upper()
        raw = env.get(name)
        if raw is None:
            continue
        if as_env_vars and info.annotation is str:
            values[field] = dg.EnvVar(name)
            continue
        if as_env_vars and info.annotation is int:
            values[field] = dg.EnvVar.int(name)
            continue
        try:
            values[field] = json.loads(raw)
        except json.JSONDecodeError:
            values[field] = raw
    values.update(overrides)
    return cls(**values)
