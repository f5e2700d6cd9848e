"""The import rules of docs/architecture.md, and a command line that starts without the library."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    # package: top-level packages its modules must never import
    "mmer_core": {"models", "extractors", "mmer_cli", "torch", "numpy"},
    "extractors": {"models", "mmer_cli"},
    "models": {"extractors", "mmer_cli"},
}


def _imported_packages(path: Path) -> set[str]:
    """Top-level package of every absolute import in the file (module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_the_architecture_allows(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files
    broken = {str(f.relative_to(REPO)): sorted(_imported_packages(f) & FORBIDDEN[package]) for f in files}
    assert {f: names for f, names in broken.items() if names} == {}


def test_the_rule_checker_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from models.checkpoint import load_checkpoint\n    import mmer_cli.cli\n")
    assert _imported_packages(source) == {"models", "mmer_cli"}


def _modules_after_import(*modules: str, cwd: Path = REPO) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print(' '.join(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_feature_types_import_no_torch():
    loaded = _modules_after_import("mmer_core", "extractors.featureset", "extractors.errors")
    assert "torch" not in loaded
    assert not any(m == "models" or m.startswith("models.") for m in loaded)


def test_the_command_line_loads_without_torch_or_the_networks():
    loaded = _modules_after_import("mmer_cli.cli")
    assert {"torch", "h5py", "numpy", "models.lddu", "models.lamb", "mmer_cli.analysis"}.isdisjoint(loaded)


def test_model_names_import_no_implementation():
    loaded = _modules_after_import("models.registry", "models")
    assert {"torch", "models.lddu", "models.lamb"}.isdisjoint(loaded)


def _mmer(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "mmer_cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_python_m_help_lists_every_command():
    done = _mmer("--help", cwd=REPO)
    assert done.returncode == 0, done.stderr
    for command in ("analyze", "extract", "train", "eval", "score", "models", "report"):
        assert command in done.stdout


def test_a_users_models_or_extractors_folder_does_not_shadow_ours(tmp_path):
    for name in ("models", "extractors"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise RuntimeError('the user\\'s own {name} package')\n")
    done = _mmer("models", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "lddu (LDDUConfig)" in done.stdout and "lamb (LAMBConfig)" in done.stdout


def test_static_name_tables_match_the_registries():
    from mmer_cli.catalog import CORPUS_NAMES, DATASET_NAMES
    from mmer_cli.corpora import corpus_names
    from mmer_cli.datasets import dataset_names
    from models.registry import get_entry, model_names

    assert dataset_names() == list(DATASET_NAMES)
    assert corpus_names() == list(CORPUS_NAMES)
    assert model_names() == ["lamb", "lddu"]
    for name in model_names():
        assert get_entry(name).model_class.registry_name == name


def test_library_errors_name_parameters_and_the_cli_spells_them_as_flags():
    from mmer_cli.analysis import Analyzer, AnalyzeOptions
    from mmer_cli.commands.common import flag_message
    from mmer_cli.errors import UserError
    from mmer_cli.runtime import set_threads

    with pytest.raises(UserError) as threads:
        set_threads(0)
    assert (str(threads.value), flag_message(threads.value)) == ("threads must be >= 1, got 0",
                                                                  "--threads must be >= 1, got 0")
    with pytest.raises(UserError) as window:
        Analyzer(AnalyzeOptions(window_s=-1.0))
    assert str(window.value) == "window_s must be > 0 seconds (a finite number), got -1"
    assert flag_message(window.value) == "--window must be > 0 seconds (a finite number), got -1"
    assert flag_message(UserError("threads file: other text")) == "threads file: other text"  # no parameter named
