"""The Python API as documented: every ```python block of docs/api.md and README.md's "Python API"
section runs as written, in a folder holding the files the snippets name."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from tests import synthetic_benchmarks as sb
from tests.conftest import REPO, SAMPLE

pytestmark = pytest.mark.slow  # the shipped default model and the real extractors

DOCS = {"docs/api.md": None, "README.md": "## Python API"}


def python_blocks(doc: str, section: str | None) -> list[str]:
    text = (REPO / doc).read_text(encoding="utf-8")
    if section is not None:
        text = text[text.index(section):]
        text = text[:text.index("\n## ", len(section))]
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_every_api_section_has_snippets():
    blocks = python_blocks("docs/api.md", None)
    assert len(blocks) == 5
    assert any("analyze(" in b for b in blocks) and any("train(" in b for b in blocks)
    assert any("score_files(" in b for b in blocks) and python_blocks("README.md", "## Python API")


@pytest.fixture(scope="module")
def api_folder(tmp_path_factory):
    """clip.mp4 and samples/sample_joy.mp4 (the sample; the README's snippet runs from the repository's
    folder), features/ (a synthetic feature cache), truth.csv and pred.csv."""
    folder = tmp_path_factory.mktemp("api")
    shutil.copy(SAMPLE, folder / "clip.mp4")
    (folder / "samples").mkdir()
    shutil.copy(SAMPLE, folder / "samples" / "sample_joy.mp4")
    sb.write_cache(folder / "features", (16, 8, 8), groups=2)
    labels = ["anger", "joy", "sadness"]
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (12, 3))
    probs = np.clip(truth * 0.6 + rng.random((12, 3)) * 0.4, 0, 1)
    (folder / "truth.csv").write_text(",".join(labels) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in truth))
    (folder / "pred.csv").write_text(",".join(labels) + "\n" + "".join(",".join(f"{p:.3f}" for p in r) + "\n"
                                                                     for r in probs))
    return folder


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_documented_snippets_run(doc, api_folder, monkeypatch, capsys):
    monkeypatch.chdir(api_folder)
    for block in python_blocks(doc, DOCS[doc]):
        namespace: dict = {}
        exec(compile(block, f"{doc} snippet", "exec"), namespace)  # noqa: S102 - our own documentation
    printed = capsys.readouterr().out
    assert printed.strip(), "the snippets print their results"
    if doc == "docs/api.md":
        assert (api_folder / "runs" / "lddu" / "best.safetensors").is_file()
        assert namespace["report"].metrics.num_samples == 12
