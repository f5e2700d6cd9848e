"""What pyproject.toml declares is what the code needs: every third-party import is a declared
requirement of its part (runtime, the `test` extra, the `recipes` extra), and the Python version
claim holds for every source file."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE_FOLDERS = ("mmer", "mmer_cli", "extractors", "models")
SOURCE_FOLDERS = (*PACKAGE_FOLDERS, "tests", "recipes", "benchmarks", "tools", "samples")
PARTS = {
    # part: (its folders, the requirement groups it may use)
    "runtime": (PACKAGE_FOLDERS, ("dependencies",)),
    "tests": (("tests",), ("dependencies", "test")),
    "recipes": (("recipes", "benchmarks", "tools", "samples"), ("dependencies", "test", "recipes")),
}
NOT_INSTALLED_BY_DESIGN = {
    "keras": "recipes/expression_reference_outputs.py runs the original Keras network in a throw-away venv "
             "(its docstring says how); mmer never installs Keras or TensorFlow",
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(groups: tuple[str, ...]) -> set[str]:
    project = PYPROJECT["project"]
    specs = [*(project["dependencies"] if "dependencies" in groups else [])]
    for extra in groups:
        specs += project.get("optional-dependencies", {}).get(extra, [])
    return {_normalise(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]) for spec in specs}


def _third_party_imports(folders: tuple[str, ...]) -> dict[str, str]:
    """top-level import name -> one file importing it, for imports that are neither the standard
    library, mmer itself, nor a module of this repository (recipes import their siblings, tests
    import recipes and tools)."""
    local = {f.stem for folder in SOURCE_FOLDERS for f in (REPO / folder).rglob("*.py")} | {"mmer", "tests"}
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local and top != "__future__":
                        found.setdefault(top, str(path.relative_to(REPO)))
    return found


@pytest.mark.parametrize("part", sorted(PARTS))
def test_every_third_party_import_is_declared(part):
    folders, groups = PARTS[part]
    declared = _declared(groups)
    distributions = packages_distributions()
    undeclared = {}
    for name, where in _third_party_imports(folders).items():
        if name in NOT_INSTALLED_BY_DESIGN:
            continue
        provided_by = {_normalise(d) for d in distributions.get(name, [])}
        if not provided_by & declared:
            undeclared[name] = (where, sorted(provided_by) or "not installed")
    assert undeclared == {}


def test_the_runtime_imports_no_test_or_recipe_only_package():
    runtime = _declared(("dependencies",))
    only_elsewhere = (_declared(("test", "recipes")) - runtime) & {
        _normalise(d) for name in _third_party_imports(PACKAGE_FOLDERS) for d in packages_distributions().get(name, [])}
    assert only_elsewhere == set()


def test_every_source_file_is_valid_for_the_oldest_python_claimed():
    claimed = PYPROJECT["project"]["requires-python"]
    oldest = tuple(int(part) for part in re.fullmatch(r">=\s*(\d+)\.(\d+)", claimed).groups())
    assert oldest >= (3, 11), "tomllib (mmer.training) needs Python 3.11"
    assert sys.version_info[:2] >= oldest
    for folder in SOURCE_FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=oldest)


def test_the_checker_catches_an_undeclared_import(tmp_path, monkeypatch):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("def f():\n    import yaml\n    import json\n    from . import sibling\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert _third_party_imports(("pkg",)) == {"yaml": "pkg/m.py"}
