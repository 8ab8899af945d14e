"""docs/settings.md is what docs/settings.py makes of ``config.settings.Settings`` today."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "settings.py"


def reference_script() -> ModuleType:
    """docs/settings.py, loaded from its file (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("settings_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_reference_is_regenerated_from_the_settings_object() -> None:
    script = reference_script()
    expected = script.render()
    written = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    if written != expected:
        diff = difflib.unified_diff(
            written.splitlines(), expected.splitlines(), "docs/settings.md", "Settings", lineterm=""
        )
        pytest.fail(
            "docs/settings.md does not match config/settings.py; regenerate it with "
            f"`{script.COMMAND}`\n" + "\n".join(list(diff)[:40]),
            pytrace=False,
        )
