"""config/codeqd.example.toml stays true: it lists every key, and it loads."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

from codeqd import config as cfgmod

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "codeqd.example.toml"
# Keys whose values are open tables (one entry per command): listed as an empty table.
OPEN_TABLES = {"backoff.commands", "tracing.headers"}


def _keys(cls: type[Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and key not in OPEN_TABLES:
            out |= _keys(tp, key + ".")  # type: ignore[arg-type]
        else:
            out.add(key)
    return out


def _listed(data: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in OPEN_TABLES:
            out |= _listed(v, key + ".")
        else:
            out.add(key)
    return out


def test_every_key_is_listed_and_commented() -> None:
    listed = _listed(tomllib.loads(EXAMPLE.read_text()))
    expected = _keys(cfgmod.Config)
    assert expected - listed == set(), "keys missing from the example"
    assert listed - expected == set(), "keys in the example that codeqd does not know"


def test_example_loads_and_equals_defaults() -> None:
    loaded = cfgmod.load(EXAMPLE, environ={})
    defaults = cfgmod.load(None, environ={"CODEQD_STATE_DIR": "./.codeqd"})
    assert dataclasses.replace(loaded, source="") == defaults
