"""The house rules, checked on the source: arrows point one way, the domain does no I/O, every
package folder is installed as m22bol.<folder>, and nothing imports a bare folder name."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each layer and the layers it may import from (itself included). The ledger knows no reader,
# the read side and the synthetic trial know no command line, the domain knows nothing above.
MAY_IMPORT = {
    "domain": {"domain"},
    "ledger": {"domain", "ledger"},
    "projections": {"domain", "ledger", "projections"},
    "synthetic": {"domain", "ledger", "synthetic"},
    "cli": {"domain", "ledger", "projections", "synthetic", "cli"},
}
# Modules whose import would mean the domain does I/O or depends on a store or the terminal.
IO_MODULES = {"sqlite3", "sqlalchemy", "psycopg", "eventsourcing", "subprocess", "socket",
              "click", "os", "shutil", "tempfile", "pathlib", "urllib", "http", "logging",
              "matplotlib", "jinja2"}


def _sources(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute module imported anywhere in the file (functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_imports_point_down_only(layer):
    upward = [f"{p.relative_to(ROOT)}:{line} imports {name}"
              for p in _sources(layer) for line, name in _imports(p)
              if name.startswith("m22bol.") and name.split(".")[1] not in MAY_IMPORT[layer]]
    assert upward == []


@pytest.mark.parametrize("layer", [*sorted(MAY_IMPORT), "tests", "bench"])
def test_nothing_imports_a_bare_folder_name(layer):
    bare = [f"{p.relative_to(ROOT)}:{line} imports {name}"
            for p in _sources(layer) for line, name in _imports(p)
            if name.split(".")[0] in MAY_IMPORT]
    assert bare == []


def test_the_domain_imports_no_io():
    found = [f"{p.relative_to(ROOT)}:{line} imports {name}"
             for p in _sources("domain") for line, name in _imports(p)
             if name.split(".")[0] in IO_MODULES]
    assert found == []


def test_the_checker_sees_an_upward_arrow(tmp_path):
    # The walk above must find an import however it is written, or it proves nothing.
    source = tmp_path / "bad.py"
    source.write_text("def f():\n    from m22bol.cli.main import app\nimport m22bol.ledger.app\n")
    assert sorted(name for _, name in _imports(source)) == ["m22bol.cli.main", "m22bol.ledger.app"]


def test_every_package_folder_is_installed_under_m22bol():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    folders = {str(init.parent.relative_to(ROOT)).replace("/", ".")
               for layer in MAY_IMPORT for init in (ROOT / layer).rglob("__init__.py")}
    assert set(config["packages"]) == {f"m22bol.{f}" for f in folders}
    assert config["package-dir"] == {f"m22bol.{layer}": layer for layer in MAY_IMPORT}


def test_every_package_says_its_one_job():
    silent = [layer for layer in MAY_IMPORT
              if not ast.get_docstring(ast.parse((ROOT / layer / "__init__.py").read_text()))]
    assert silent == []
