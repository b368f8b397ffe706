"""The folder layout is the architecture (docs/architecture.md): dependencies point one way."""
import ast
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.unit


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _offenders(package: str, forbidden: str) -> list[str]:
    found = []
    for path in sorted((BASE_DIR / package).rglob("*.py")):
        for name in _imports(path):
            if name == forbidden or name.startswith(forbidden + "."):
                found.append(f"{path.relative_to(BASE_DIR)} imports {name}")
    return found


def test_accounts_never_imports_realtime():
    assert _offenders("accounts", "realtime") == []


def test_the_gateway_core_never_imports_a_dialect():
    assert _offenders("realtime/gateway", "realtime.dialects") == []


def test_the_local_agent_stands_alone_from_the_gateway():
    assert _offenders("realtime/local_agent", "realtime.gateway") == []
    assert _offenders("realtime/local_agent", "realtime.dialects") == []
