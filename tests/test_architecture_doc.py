"""docs/architecture.md's Layout table is the import graph (issue 16 item 5): each row's
"depends on" names exactly the parts of this repository its modules import, and every
package and top-level module of the hub has a row. The layering itself is enforced by
``lint-imports`` (pyproject.toml ``[tool.importlinter]``, a gate of .ci/run)."""

from __future__ import annotations

import re
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
# The parts of certhub/, each a root of the table (the stubs are certhub/v1).
PARTS = ("hub", "core", "signing", "cache", "adapters")


def _unit(module: str) -> str | None:
    """The table's name for the part ``module`` belongs to: ``certhub.hub.grpc.server`` ->
    ``grpc``, ``certhub.v1.audit_pb2`` -> ``stubs``, ``certhub.signing.keys`` -> ``signing``,
    ``certhub.core.rpc.client`` -> ``core.rpc``."""
    parts = module.split(".")
    if parts[0] != "certhub" or len(parts) < 2:
        return None
    parts = parts[1:]
    if parts[0] == "v1":
        return "stubs"
    if parts[0] == "hub":
        return parts[1] if len(parts) > 1 else None
    if parts[:2] == ["core", "rpc"]:
        # core's gRPC part has its own row: the rest of core imports no gRPC
        return "core.rpc"
    return parts[0] if parts[0] in PARTS else None


def _imports() -> dict[str, set[str]]:
    graph = grimp.build_graph("certhub")
    found: dict[str, set[str]] = {}
    for module in graph.modules:
        unit = _unit(module)
        if unit is None:
            continue
        found.setdefault(unit, set())
        for imported in graph.find_modules_directly_imported_by(module):
            other = _unit(imported)
            if other is not None and other != unit:
                found[unit].add(other)
    return found


def _table() -> dict[str, str]:
    """Row name -> its "depends on" cell, for rows whose path is Python code."""
    rows: dict[str, str] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([^`]+)` \| .* \| ([^|]*) \|$", line)
        if match is None:
            continue
        path, depends = match.groups()
        if path.startswith(("proto/", "tests/", "bench/")):
            continue
        name = path.removesuffix("/").removesuffix(".py")
        rows[_unit(name.replace("/", ".")) or name] = depends
    return rows


def test_every_part_has_a_row() -> None:
    assert set(_imports()) <= set(_table()), "parts of the repository missing from the table"


def test_depends_on_is_the_import_graph() -> None:
    imports = _imports()
    names = set(imports)
    wrong = {}
    for unit, cell in _table().items():
        named = set(re.findall(r"[a-z_]+(?:\.[a-z_]+)*", cell)) & names
        if named != imports.get(unit, set()):
            wrong[unit] = {
                "imported but not in the table": sorted(imports.get(unit, set()) - named),
                "in the table but not imported": sorted(named - imports.get(unit, set())),
            }
    assert not wrong, wrong
