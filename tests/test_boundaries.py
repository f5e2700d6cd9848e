"""The import rules of docs/architecture.md, and a command line that starts without the library."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LAYERS = {
    # layer: (its folder, the mmer sub-packages its modules may import, third-party it must not import)
    "mmer.core": (REPO / "mmer" / "core", ("mmer.core",), {"torch", "numpy"}),
    "mmer.extractors": (REPO / "extractors", ("mmer.core", "mmer.extractors"), set()),
    "mmer.models": (REPO / "models", ("mmer.core", "mmer.models"), set()),
    "mmer (library)": (REPO / "mmer", ("mmer",), set()),
}
"""The library may import everything under `mmer` except the CLI (`mmer.cli`); the CLI may import all."""
OLD_TOP_LEVEL = {"models", "extractors", "mmer_cli", "mmer_core"}
"""The names the package had before it moved under `mmer`: nothing may import them any more."""


def _imported_modules(path: Path) -> set[str]:
    """Dotted name of every absolute import in the file (module level or inside functions);
    `from mmer import analysis` counts as `mmer.analysis`."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "mmer":
                names.update(f"mmer.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return names


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _layer_violations(name: str, allowed: tuple[str, ...], third_party: set[str]) -> bool:
    top = name.split(".")[0]
    if top in third_party or top in OLD_TOP_LEVEL:
        return True
    if top != "mmer":
        return False
    return _within(name, "mmer.cli") or not any(_within(name, prefix) for prefix in allowed)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layer_imports_only_what_the_architecture_allows(layer):
    folder, allowed, third_party = LAYERS[layer]
    files = sorted(folder.rglob("*.py"))
    if layer == "mmer (library)":  # mmer/core is a layer of its own; `python -m mmer` starts the CLI
        files = [f for f in files if LAYERS["mmer.core"][0] not in f.parents and f.name != "__main__.py"]
    assert files
    broken = {str(f.relative_to(REPO)): sorted(n for n in _imported_modules(f) if _layer_violations(n, allowed, third_party))
              for f in files}
    assert {f: names for f, names in broken.items() if names} == {}


def test_nothing_imports_the_old_top_level_names():
    files = [f for folder in ("mmer", "mmer_cli", "extractors", "models", "tests", "recipes", "benchmarks", "tools",
                              "samples")
             for f in sorted((REPO / folder).rglob("*.py"))]
    old = {str(f.relative_to(REPO)): sorted(n for n in _imported_modules(f) if n.split(".")[0] in OLD_TOP_LEVEL)
           for f in files}
    assert {f: names for f, names in old.items() if names} == {}
    # ... nor code held in strings (scripts run by subprocess tests)
    in_strings = re.compile(r"(?:^|\\n|[\"'])\s*(?:from|import)\s+(?:" + "|".join(OLD_TOP_LEVEL) + r")[.\s]", re.M)
    quoted = {str(f.relative_to(REPO)) for f in files
              if any(in_strings.search(node.value) for node in ast.walk(ast.parse(f.read_text(encoding="utf-8")))
                     if isinstance(node, ast.Constant) and isinstance(node.value, str))}
    assert quoted == set()


def test_the_rule_checker_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from mmer.models.checkpoint import load_checkpoint\n    import mmer.cli.app\n"
                      "    from mmer import analysis\n")
    assert _imported_modules(source) == {"mmer.models.checkpoint", "mmer.cli.app", "mmer.analysis"}
    folder, allowed, third_party = LAYERS["mmer.extractors"]
    assert [n for n in sorted(_imported_modules(source)) if _layer_violations(n, allowed, third_party)] == [
        "mmer.analysis", "mmer.cli.app", "mmer.models.checkpoint"]
    assert _layer_violations("mmer.cli.app", ("mmer",), set())  # the library never imports the CLI


def _modules_after_import(*modules: str, cwd: Path = REPO) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_feature_types_import_no_torch():
    loaded = _modules_after_import("mmer", "mmer.core", "mmer.extractors.featureset", "mmer.extractors.errors")
    assert "torch" not in loaded
    assert not any(_within(m, "mmer.models") for m in loaded)


def test_the_command_line_loads_without_torch_or_the_networks():
    loaded = _modules_after_import("mmer.cli.app")
    assert {"torch", "h5py", "numpy", "mmer.models.lddu", "mmer.models.lamb", "mmer.analysis"}.isdisjoint(loaded)


def test_model_names_import_no_implementation():
    loaded = _modules_after_import("mmer.models.registry", "mmer.models")
    assert {"torch", "mmer.models.lddu", "mmer.models.lamb"}.isdisjoint(loaded)


def _mmer(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmer", *args], cwd=cwd, env={**os.environ, "COLUMNS": "200", **(env or {})},
                          capture_output=True, text=True, timeout=300)


def test_python_m_help_lists_every_command():
    done = _mmer("--help", cwd=REPO)
    assert done.returncode == 0, done.stderr
    for command in ("analyze", "extract", "train", "eval", "score", "models", "report"):
        assert command in done.stdout


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    import mmer

    done = _mmer("--version", cwd=REPO)
    assert (done.returncode, done.stdout.strip()) == (0, f"mmer {version('mmer')}")
    assert mmer.__version__ == version("mmer")


def test_the_wheel_installs_only_mmer_at_top_level(tmp_path):
    """Build the wheel a user installs and look inside: one top-level package, `mmer`, with the weights
    and report assets under it."""
    import zipfile

    import shutil

    source = tmp_path / "source"  # a copy of the tracked files: building leaves build/ and *.egg-info behind
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.decode()
    for name in filter(None, tracked.split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheel"),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "wheel").glob("mmer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"mmer"}
    for packaged in ("mmer/models/weights/lddu_default.safetensors", "mmer/extractors/weights/NOTICE.md",
                     "mmer/report_assets/report.js", "mmer/cli/app.py", "mmer/core/feature_spec.py"):
        assert packaged in names


def _users_shadowing_folder(tmp_path: Path) -> Path:
    """A user's project folder with its own `models/` and `extractors/` packages (most ML projects
    have one), each failing loudly when imported."""
    for name in ("models", "extractors", "mmer_cli", "mmer_core"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise RuntimeError('the user\\'s own {name} package')\n")
    return tmp_path


def test_a_users_models_or_extractors_folder_does_not_shadow_ours(tmp_path):
    folder = _users_shadowing_folder(tmp_path)
    on_path = {"PYTHONPATH": str(folder)}
    done = _mmer("models", cwd=folder, env=on_path)
    assert done.returncode == 0, done.stderr
    assert "lddu (LDDUConfig)" in done.stdout and "lamb (LAMBConfig)" in done.stdout
    code = ("import mmer, mmer.models.lddu, mmer.extractors.pipeline, mmer.analysis; "
            "print(mmer.Analyzer.__module__, mmer.models.lddu.__name__)")
    imported = subprocess.run([sys.executable, "-c", code], cwd=folder, env={**os.environ, **on_path},
                              capture_output=True, text=True, timeout=300)
    assert (imported.returncode, imported.stdout.split()) == (0, ["mmer.analysis", "mmer.models.lddu"]), imported.stderr


@pytest.mark.slow
def test_a_users_models_folder_does_not_change_analyze(tmp_path):
    sample = REPO / "samples" / "sample_joy.mp4"
    plain = _mmer("analyze", str(sample), "-f", "json", "--no-cache", "--threads", "1", cwd=tmp_path / "..")
    folder = _users_shadowing_folder(tmp_path)
    shadowed = _mmer("analyze", str(sample), "-f", "json", "--no-cache", "--threads", "1", cwd=folder,
                     env={"PYTHONPATH": str(folder)})
    assert plain.returncode == 0 and shadowed.returncode == 0, shadowed.stderr
    strip = lambda text: [{k: v for k, v in clip.items() if k != "timings_s"} for clip in json.loads(text)]
    assert strip(shadowed.stdout) == strip(plain.stdout)


def test_static_name_tables_match_the_registries():
    from mmer.catalog import CORPUS_NAMES, DATASET_NAMES
    from mmer.corpora import corpus_names
    from mmer.datasets import dataset_names
    from mmer.models.registry import get_entry, model_names

    assert dataset_names() == list(DATASET_NAMES)
    assert corpus_names() == list(CORPUS_NAMES)
    assert model_names() == ["lamb", "lddu"]
    for name in model_names():
        assert get_entry(name).model_class.registry_name == name


def test_library_errors_name_parameters_and_the_cli_spells_them_as_flags():
    from mmer.analysis import Analyzer, AnalyzeOptions
    from mmer.cli.commands.common import flag_message
    from mmer.errors import UserError
    from mmer.runtime import set_threads

    with pytest.raises(UserError) as threads:
        set_threads(0)
    assert (str(threads.value), flag_message(threads.value)) == ("threads must be >= 1, got 0",
                                                                  "--threads must be >= 1, got 0")
    with pytest.raises(UserError) as window:
        Analyzer(AnalyzeOptions(window_s=-1.0))
    assert str(window.value) == "window_s must be > 0 seconds (a finite number), got -1"
    assert flag_message(window.value) == "--window must be > 0 seconds (a finite number), got -1"
    assert flag_message(UserError("threads file: other text")) == "threads file: other text"  # no parameter named
