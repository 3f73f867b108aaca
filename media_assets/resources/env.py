"""Building a resource from environment variables: field ``foo_bar`` of a resource read with
prefix ``MEDIA_ASSETS_VIDEO_`` is set by ``MEDIA_ASSETS_VIDEO_FOO_BAR``. Values are parsed as
JSON when they parse (numbers, booleans, lists), else taken as strings, then validated by the
resource's pydantic model, so a bad value fails at load time with the field's name."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TypeVar

import dagster as dg

R = TypeVar("R", bound=dg.ConfigurableResource)


def resource_from_env(cls: type[R], prefix: str, environ: Mapping[str, str] | None = None, **overrides) -> R:
    """``cls(**values)`` with each field taken from ``<prefix><FIELD NAME>`` when set."""
    env = os.environ if environ is None else environ
    values = {}
    for field in cls.model_fields:
        raw = env.get(prefix + field.upper())
        if raw is None:
            continue
        try:
            values[field] = json.loads(raw)
        except json.JSONDecodeError:
            values[field] = raw
    values.update(overrides)
    return cls(**values)
