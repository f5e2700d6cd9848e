"""The on-disk layout of one training run (`mmer train --out RUN_DIR`).

    RUN_DIR/
      config.json        resolved model config + run settings (model, dataset, data paths, seed, ...)
      metrics.jsonl      one JSON object per finished epoch (train loss parts, validation metrics, lr, seconds)
      best.safetensors   checkpoint of the epoch with the best validation selection metric
      last.safetensors   checkpoint of the last finished epoch
      state.pt           resumable training state (model, optimizer, scheduler, RNG states, counters)
      test_metrics.json  test-split metrics of best.safetensors, written once at the end

Files that a crash could leave half-written (state, checkpoints, JSON) are written to a temporary
name and renamed into place, so an interrupted run always has a consistent last epoch to resume.
`state.pt` is read with `torch.load(weights_only=True)`: it holds tensors and plain Python values only.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from mmer.errors import UserError
from mmer.core.atomic_file import replacing, write_text_atomic

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
BEST_CHECKPOINT = "best.safetensors"
LAST_CHECKPOINT = "last.safetensors"
STATE_FILE = "state.pt"
TEST_METRICS_FILE = "test_metrics.json"


class RunDir:
    """Paths and readers/writers of one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def best_path(self) -> Path:
        return self.root / BEST_CHECKPOINT

    @property
    def last_path(self) -> Path:
        return self.root / LAST_CHECKPOINT

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    @property
    def test_metrics_path(self) -> Path:
        return self.root / TEST_METRICS_FILE

    def require_new(self) -> None:
        """Refuse to start a fresh run on top of an existing one."""
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root}: --out exists and is not a directory")
        if self.config_path.exists() or self.state_path.exists():
            raise UserError(f"{self.root}: already holds a training run; pass --resume to continue it or choose another --out")

    def require_resumable(self) -> None:
        for path in (self.config_path, self.state_path):
            if not path.is_file():
                raise UserError(f"{path}: missing, cannot --resume (is {self.root} a run directory?)")

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    # config.json --------------------------------------------------------------------------------
    def write_config(self, settings: dict) -> None:
        write_text_atomic(self.config_path, json.dumps(settings, indent=2) + "\n")

    def read_config(self) -> dict:
        try:
            data = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"{self.config_path}: unreadable run config ({err})") from None
        if not isinstance(data, dict) or "model" not in data or "config" not in data:
            raise UserError(f"{self.config_path}: not an mmer run config (keys model/config missing)")
        return data

    # metrics.jsonl ------------------------------------------------------------------------------
    def append_metrics(self, record: dict) -> None:
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict]:
        """Every epoch record, in order (empty when the file does not exist)."""
        if not self.metrics_path.exists():
            return []
        records = []
        for number, line in enumerate(self.metrics_path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    raise UserError(f"{self.metrics_path}:{number}: not a JSON line") from None
        return records

    def truncate_metrics(self, last_epoch: int) -> None:
        """Drop records of epochs after `last_epoch` (written before a crash, not in the saved state)."""
        kept = [r for r in self.read_metrics() if int(r.get("epoch", 0)) <= last_epoch]
        write_text_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

    # state.pt -----------------------------------------------------------------------------------
    def save_state(self, state: dict) -> None:
        with replacing(self.state_path) as tmp:
            torch.save(state, tmp)

    def load_state(self) -> dict:
        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for corrupt/foreign files
            raise UserError(f"{self.state_path}: unreadable training state ({str(err).splitlines()[0]})") from None
        if not isinstance(state, dict) or "epoch" not in state or "model" not in state:
            raise UserError(f"{self.state_path}: not an mmer training state")
        return state

    # test_metrics.json --------------------------------------------------------------------------
    def write_test_metrics(self, report: dict) -> None:
        write_text_atomic(self.test_metrics_path, json.dumps(report, indent=2) + "\n")
