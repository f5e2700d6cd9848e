"""What several test files share: repository paths, the sample clip, a tiny random checkpoint, the CLI
runner and the `slow` marker (tests on the real shipped models and extractor networks).

Test files import the helpers with `from tests.conftest import ...` (also from subprocesses run in the
repository root).
`pytest -m "not slow"` leaves out the tests marked slow.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE = REPO / "samples" / "sample_joy.mp4"
SAMPLE_SRT = REPO / "samples" / "sample_joy.srt"
LABELS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
"""The label names of the tiny checkpoints (those of the shipped default models' order)."""

TINY_TRAIN = ("--tiny", "--device", "cpu", "--threads", "1", "--batch-size", "8", "--quiet")
"""`mmer train` options of a quick, deterministic run on a synthetic benchmark."""

runner = CliRunner()


def mmer(*args) -> "object":
    """Run `mmer ARGS...` in-process (typer's CliRunner); arguments are turned into strings."""
    from mmer.cli.app import app

    return runner.invoke(app, [str(a) for a in args])


def ok(result) -> None:
    """Assert a CliRunner result exited 0, showing its output otherwise."""
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def tiny_checkpoint(path: Path, model: str = "lddu", spec=None, thresholds=None, seed: int = 0) -> Path:
    """A random-weight `model` checkpoint with the 7 `LABELS` over `spec` (default: the extractor's),
    decision thresholds `thresholds` (default 0.5 each)."""
    import torch

    from mmer.extractors.pipeline import ExtractionSettings, feature_spec_for
    from mmer.models.checkpoint import save_checkpoint
    from mmer.models.registry import build_model, get_entry

    spec = spec or feature_spec_for(ExtractionSettings())
    torch.manual_seed(seed)
    network = build_model(model, get_entry(model).config_class.tiny(len(LABELS), spec.dims))
    return save_checkpoint(path, network, LABELS, spec, [0.5] * len(LABELS) if thresholds is None else thresholds)
