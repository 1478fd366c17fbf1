"""`certhub/adapters/` runs beside a department's system, without the hub's code: it may import
`signing`, the generated `certhub.v1` stubs, the standard library and third-party packages,
never `hub`."""

from __future__ import annotations

import ast
from pathlib import Path

ADAPTERS = Path(__file__).resolve().parents[2] / "certhub" / "adapters"


def test_adapters_never_import_hub() -> None:
    offenders = []
    for path in sorted(ADAPTERS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ADAPTERS.parent)}:{node.lineno} imports {name}"
                for name in names
                if name == "certhub.hub" or name.startswith("certhub.hub.")
            ]
    assert len(list(ADAPTERS.rglob("*.py"))) > 10
    assert not offenders, offenders
