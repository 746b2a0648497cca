"""docs/configuration.md names every variable of the settings tree, and only real ones."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from serve.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def variables(model: type[BaseModel], prefix: str) -> list[str]:
    """The environment variable of every leaf field under `model` (sections nest with `__`)."""
    names = []
    for name, info in model.model_fields.items():
        var = f"{prefix}{name.upper()}"
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names += variables(kind, var + "__")
        else:
            names.append(var)
    return names


def documented() -> set[str]:
    """The variables that open a row of one of the page's tables."""
    return set(re.findall(r"^\| `(SPECIALIST_[A-Z0-9_]+)` \|", DOC.read_text(), flags=re.MULTILINE))


def test_the_tree_is_walked_to_its_leaves() -> None:
    found = variables(Settings, "SPECIALIST_")
    assert "SPECIALIST_RETRIEVAL__QDRANT_URL" in found and "SPECIALIST_SERVE__PORT" in found
    assert not any(v.endswith(("__RETRIEVAL", "__SERVE")) or v == "SPECIALIST_AGENT" for v in found)


def test_every_setting_is_documented() -> None:
    missing = [v for v in variables(Settings, "SPECIALIST_") if v not in documented()]
    assert not missing, f"add these settings to docs/configuration.md (name, default, meaning): {missing}"


def test_every_documented_setting_exists() -> None:
    stale = sorted(documented() - set(variables(Settings, "SPECIALIST_")))
    assert not stale, f"docs/configuration.md documents settings that do not exist: {stale}"
