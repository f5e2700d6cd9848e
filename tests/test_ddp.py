"""`mmer train` under torchrun: 2 CPU processes (gloo) train the same model as 1 process.

Why the comparison is exact up to float rounding: the 1-process run uses batch 8, the 2-process
run batch 4 per process. DistributedSampler draws the same permutation for a given seed and epoch
whatever the world size, and rank r takes positions r, r+2, ...; so at every step the two ranks'
batches together are exactly the 1-process batch. DDP averages the two ranks' gradients of their
batch-mean losses, which equals the gradient of the 8-sample mean loss, provided the loss is a
mean of per-sample terms and nothing random differs: dropout is off (`dropout=0`) and LDDU's
batch-coupled terms (SupCon across the batch and queue, the batch-softmax ordinality ranking) are
switched off for the comparison. What remains is float32 summation order (4 + 4 then an
all-reduce instead of 8), ~1e-7 relative per step, which Adam's normalisation can amplify for
near-zero gradients to ~1e-4 in the weights over these few steps. Probabilities then move by
~1e-5, which can flip a decision only when it sits that close to a threshold, hence the tolerances:
train loss 1e-4 relative, validation metrics 0.02 absolute (about one flipped decision of the 96),
parameters 1e-3 absolute. A real fault (gradients summed instead of averaged, overlapping or missing
shards, validation on one shard) moves these numbers by far more.

A separate run trains LDDU with its full objective (queue, SupCon, ordinality) under DDP: those terms
depend on the batch split, so that run is checked for completing and producing a valid run
directory, not for equality.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from mmer.distributed import DistContext, TrainForward, unused_parameter_names
from mmer.training import TrainOptions, train
from mmer.models.batch import ModelOutput, MultimodalBatch
from mmer.models.checkpoint import load_checkpoint
from mmer.models.registry import model_names
from tests.synthetic_benchmarks import write_mosei_aligned
from tests.conftest import REPO

SIZES = (32, 16, 16)  # train divisible by the global batch 8: no partial batches, no sampler padding

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")]

PER_SAMPLE_LOSS = {"lddu": ["beta_scl=0", "lambda_ocl=0"]}
"""Settings that make a model's loss a mean of per-sample terms (see the module docstring)."""


def torchrun(out: Path, bench, model: str, per_process_batch: int, overrides: list[str],
             extra: tuple[str, ...] = ("--epochs", "3")) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "mmer", "train", "--model", model, "--dataset", bench.dataset, "--data", str(bench.data),
               "--tiny", "--device", "cpu", *extra, "--batch-size", str(per_process_batch), "--quiet",
               "--out", str(out)]
    for item in overrides:
        command += ["--set", item]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_mosei_aligned(tmp_path_factory.mktemp("ddp_data"), SIZES, seq_len=12)


@pytest.mark.parametrize("model", model_names())
def test_two_processes_match_one_process(model, bench, tmp_path):
    overrides = ["dropout=0", "lr=0.003", *PER_SAMPLE_LOSS.get(model, [])]
    train(TrainOptions(model=model, dataset=bench.dataset, data=bench.data, tiny=True, epochs=3, batch_size=8,
                       device="cpu", threads=1, out=tmp_path / "one", overrides=overrides))
    done = torchrun(tmp_path / "two", bench, model, per_process_batch=4, overrides=overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("training:") == 1, "only rank 0 reports"
    assert "2 process(es)" in done.stdout and "4 steps/epoch" in done.stdout
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2

    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert [r["epoch"] for r in two] == [1, 2, 3]
    for a, b in zip(one, two):
        assert b["train"]["total"] == pytest.approx(a["train"]["total"], rel=1e-4)
        assert b["val"]["num_samples"] == SIZES[1]  # every validation sample, gathered from both ranks
        for key in ("micro_f1", "macro_f1", "acc", "hamming_loss"):
            assert b["val"][key] == pytest.approx(a["val"][key], abs=0.02), (a["epoch"], key)
    # Parameters only: buffers of batch statistics (e.g. LDDU's EMA of variance norms, used for
    # uncertainty) follow rank 0's half of each batch under DDP and legitimately differ.
    w1 = dict(load_checkpoint(tmp_path / "one" / "last.safetensors")[0].named_parameters())
    w2 = dict(load_checkpoint(tmp_path / "two" / "last.safetensors")[0].named_parameters())
    assert w1.keys() == w2.keys()
    for name, value in w1.items():
        assert torch.allclose(value, w2[name], atol=1e-3), name
    test_two = json.loads((tmp_path / "two" / "test_metrics.json").read_text())
    assert test_two["num_samples"] == SIZES[2]


@pytest.mark.parametrize("model", sorted(PER_SAMPLE_LOSS))
def test_full_objective_trains_under_ddp(model, bench, tmp_path):
    done = torchrun(tmp_path / "run", bench, model, per_process_batch=4, overrides=[])
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "best.safetensors", "last.safetensors", "state.pt", "test_metrics.json"):
        assert (run / name).is_file(), name
    history = records(run)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    for r in history:
        assert r["val"]["num_samples"] == SIZES[1]
        assert all(math.isfinite(value) for value in r["train"].values())


def test_seeds_under_torchrun(bench, tmp_path):
    """`--seeds 2` under torchrun: both seeds train with 2 processes, rank 0 alone writes the summary."""
    done = torchrun(tmp_path / "out", bench, "lamb", per_process_batch=4, overrides=[],
                    extra=("--epochs", "1", "--seeds", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("training:") == 2 and done.stdout.count("2 process(es)") == 2
    summary = json.loads((tmp_path / "out" / "seeds_summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    values = [json.loads((tmp_path / "out" / f"seed-{s}" / "test_metrics.json").read_text())["micro_f1"] for s in (0, 1)]
    assert summary["metrics"]["micro_f1"]["values"] == values
    assert done.stdout.count("summary: ") == 1  # only rank 0 prints the mean ± std table


class ToyModel(torch.nn.Module):
    """A two-branch network whose second branch is switched off: its parameters get no gradient."""

    def __init__(self, use_second: bool) -> None:
        super().__init__()
        self.first = torch.nn.Linear(3, 2)
        self.second = torch.nn.Linear(3, 2)
        self.use_second = use_second

    def forward(self, batch):
        x = batch.features["text"].mean(dim=1)  # (B, T, 3) -> (B, 3)
        logits = self.first(x) + (self.second(x) if self.use_second else 0.0)
        return ModelOutput(probs=torch.sigmoid(logits), aux={"logits": logits})


def toy_batch() -> MultimodalBatch:
    feats = {"text": torch.randn(4, 5, 3), "audio": torch.randn(4, 5, 2), "visual": torch.randn(4, 5, 2)}
    return MultimodalBatch.from_tensors(feats, labels=torch.ones(4, 2))


def check_unused_parameters_under_ddp(store: str) -> None:
    """Unused parameters are detected, and DDP trains with and without them (one-process gloo group).

    Run in a fresh interpreter by the test below: a gloo group in the long-lived pytest process
    was seen to hang after other tests had run there, and a hang must fail, not stall the suite.
    """
    assert unused_parameter_names(ToyModel(False), toy_batch(), torch.device("cpu")) == ["second.weight", "second.bias"]
    assert unused_parameter_names(ToyModel(True), toy_batch(), torch.device("cpu")) == []
    # A one-process gloo group is enough to build DDP and run steps with and without unused parameters.
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        ctx = DistContext(world_size=2, rank=0, local_rank=0, device=torch.device("cpu"))  # "distributed" path
        for use_second in (False, True):
            model = ToyModel(use_second)
            forward = TrainForward(model, ctx, toy_batch())
            assert forward.ddp.find_unused_parameters is (not use_second)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            before = {name: p.detach().clone() for name, p in model.named_parameters()}
            for _ in range(2):
                out = forward(toy_batch())
                torch.nn.functional.binary_cross_entropy(out.probs, torch.ones_like(out.probs)).backward()
                optimizer.step()
                optimizer.zero_grad()
            assert not torch.equal(before["first.weight"], model.first.weight)
            assert torch.equal(before["second.weight"], model.second.weight) is (not use_second)
    finally:
        dist.destroy_process_group()


def test_unused_parameters_are_detected_and_ddp_trains_with_them(tmp_path):
    code = ("import sys; from tests.test_ddp import check_unused_parameters_under_ddp as check; "
            "check(sys.argv[1])")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "store")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
