"""The TOML line locator: every line number an operator sees in a registry problem."""

from __future__ import annotations

import tomllib
from pathlib import Path

from certhub.hub.registry.locator import Locator

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "registry.example.toml"


def _leaf_paths(value: object, path: str = "") -> list[tuple[str, str]]:
    """(path, key) of every key of a parsed TOML document."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else key
            found.append((child_path, key))
            found.extend(_leaf_paths(child, child_path))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found.extend(_leaf_paths(child, f"{path}[{i}]"))
    return found


def test_every_key_of_the_example_is_located_on_its_own_line() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    locator = Locator(text)
    lines = text.split("\n")
    paths = _leaf_paths(tomllib.loads(text))
    assert len(paths) > 150
    for path, key in paths:
        line = locator.line(path)
        assert line is not None, path
        assert key in lines[line - 1], (path, line, lines[line - 1])
