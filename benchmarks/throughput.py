"""Training and inference throughput of every registered model on CMU-MOSEI-shaped synthetic data.

    python benchmarks/throughput.py --device cpu --threads 1 2
    python benchmarks/throughput.py --device cuda

For each model x feature shape x thread count, one fresh worker process (so that peak memory is
that case's alone) builds the model with its DEFAULT config (the paper's hyper-parameters: batch
size, widths, depths, optimiser, gradient clipping), fed by the real data path (MultimodalDataset ->
DataLoader -> collate) over random features, and times:
- training: `--warmup-steps` untimed then `--train-steps` timed optimisation steps (forward, loss,
  backward, clipping, optimiser step), samples/s = batch_size / mean step time;
- inference: `--infer-batches` timed batches of `model.predict` (what validation, `mmer eval` and
  `mmer analyze` run; LAMB's predict is `mc_samples` Monte-Carlo dropout passes).
Epoch times are extrapolated from these rates to the CMU-MOSEI split sizes: 16,326 training
samples, plus 1,871 validation samples predicted once per epoch.
Memory: peak resident set size of the worker (getrusage ru_maxrss) and its RSS before the model
was built (/proc/self/status VmRSS); on CUDA also torch.cuda.max_memory_allocated.

Shapes (frames x feature dims, every frame valid):
  aligned:   text 60 x 300, audio 60 x 74, visual 60 x 35   (word-aligned MOSEI, GloVe/COVAREP/FACET)
  unaligned: text 50 x 300, audio 500 x 74, visual 500 x 35 (MulT unaligned MOSEI)

Writes benchmarks/results/throughput_<device>.json and .md with the hardware, torch version, git
commit, date and the load average (this machine is shared; a loaded machine runs slower).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mmer.provenance import cpu_model, git_description, peak_rss_mib, rss_mib  # noqa: E402

MOSEI_TRAIN_SAMPLES = 16_326
MOSEI_VALID_SAMPLES = 1_871
NUM_LABELS = 6
LABEL_DENSITY = 0.3
"""Probability of each label being present in the random targets (MOSEI averages ~1.3 of 6)."""

SHAPES: dict[str, dict[str, tuple[int, int]]] = {
    "aligned": {"text": (60, 300), "audio": (60, 74), "visual": (60, 35)},
    "unaligned": {"text": (50, 300), "audio": (500, 74), "visual": (500, 35)},
}
"""shape name -> modality -> (frames T, feature dim D)."""


PROFILE_PHASES = ("data", "forward", "loss", "backward", "optimizer")
PROFILE_TOP_OPS = 10


def _train_step(model, optimizer, batches, device, grad_clip: float, label=None, amp=None, scaler=None) -> None:
    """One optimisation step as the trainer runs it; `label(name)` wraps each phase (profiling).
    amp: a mmer.runtime.Precision (None = fp32); scaler: its fp16 GradScaler (or None)."""
    import contextlib

    import torch

    phase = label or (lambda name: contextlib.nullcontext())
    autocast = amp.autocast if amp is not None else contextlib.nullcontext
    with phase("data"):
        batch = next(batches).to(device)
    with phase("forward"), autocast():
        output = model(batch)
    with phase("loss"), autocast():
        loss = model.loss(output, batch)
    with phase("backward"):
        optimizer.zero_grad(set_to_none=True)
        (loss.total if scaler is None else scaler.scale(loss.total)).backward()
    with phase("optimizer"):
        if scaler is not None:
            scaler.unscale_(optimizer)
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()


def _profile_step(model, optimizer, batches, device, grad_clip: float, amp=None, scaler=None) -> dict:
    """One extra training step under torch.profiler: wall ms per phase and the top operators by self time."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        _train_step(model, optimizer, batches, device, grad_clip, label=record_function, amp=amp, scaler=scaler)
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1000.0 for e in events if e.key in PROFILE_PHASES}
    ops = sorted((e for e in events if e.key not in PROFILE_PHASES), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return {
        "phase_ms": phases,
        "top_ops": [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1000.0, "calls": e.count,
                     "share": e.self_cpu_time_total / total} for e in ops[:PROFILE_TOP_OPS]],
    }


def run_case(model_name: str, shape: str, threads: int, device_choice: str, warmup_steps: int,
             train_steps: int, infer_batches: int, seed: int, profile: bool = False, precision: str = "fp32",
             checkpointing: bool = False, batch_size: int | None = None) -> dict:
    """Measure one case in this process; returns a JSON-ready dict. precision: "fp32" | "bf16" |
    "fp16" (autocast, as `mmer train --precision`); checkpointing: the config's
    activation_checkpointing where it has one; batch_size: instead of the config's (dry runs)."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from mmer.datasets.base import MultimodalDataset, collate
    from mmer.optimization import build_optimizer
    from mmer.runtime import resolve_device, resolve_precision
    from mmer.models.registry import build_model, get_entry

    torch.set_num_threads(threads)
    device = resolve_device(device_choice)
    amp = resolve_precision(precision, device)
    dims = {m: d for m, (_, d) in SHAPES[shape].items()}
    config = dataclasses.replace(get_entry(model_name).config_class(), num_labels=NUM_LABELS, input_dims=dims)
    if batch_size is not None:
        config = dataclasses.replace(config, batch_size=batch_size)
    if checkpointing and hasattr(config, "activation_checkpointing"):
        config = dataclasses.replace(config, activation_checkpointing=True)
    batch_size = config.batch_size
    n = batch_size * max(warmup_steps + train_steps + int(profile), infer_batches)
    rng = np.random.default_rng(seed)
    features = {m: rng.standard_normal((n, t, d), dtype=np.float32) for m, (t, d) in SHAPES[shape].items()}
    labels = (rng.random((n, NUM_LABELS)) < LABEL_DENSITY).astype(np.float32)
    dataset = MultimodalDataset(lambda i: {m: x[i] for m, x in features.items()}, labels)
    rss_before = rss_mib()

    torch.manual_seed(seed)
    model = build_model(model_name, config)
    model.prepare_training(MOSEI_TRAIN_SAMPLES)
    model.to(device).train()
    optimizer = build_optimizer(model, config)
    scaler = amp.grad_scaler()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    step_times, step_cpu = [], []
    batches = iter(loader)
    for step in range(warmup_steps + train_steps):
        sync()
        started, cpu_started = time.perf_counter(), time.process_time()
        _train_step(model, optimizer, batches, device, config.grad_clip, amp=amp, scaler=scaler)
        sync()
        if step >= warmup_steps:
            step_times.append(time.perf_counter() - started)
            step_cpu.append(time.process_time() - cpu_started)
    profiled = _profile_step(model, optimizer, batches, device, config.grad_clip, amp, scaler) if profile else None

    infer_times, infer_cpu = [], []
    batches = iter(loader)
    for _ in range(infer_batches):
        sync()
        started, cpu_started = time.perf_counter(), time.process_time()
        with amp.autocast():
            model.predict(next(batches).to(device))
        sync()
        infer_times.append(time.perf_counter() - started)
        infer_cpu.append(time.process_time() - cpu_started)

    train_sps = batch_size / (sum(step_times) / len(step_times))
    infer_sps = batch_size / (sum(infer_times) / len(infer_times))
    train_epoch_s = MOSEI_TRAIN_SAMPLES / train_sps
    valid_s = MOSEI_VALID_SAMPLES / infer_sps
    # CPU seconds the process used (all its threads); on a machine shared with other work, the
    # wall time of a 1-thread case is at least this, and it is what the case costs unshared.
    cpu_epoch_s = MOSEI_TRAIN_SAMPLES / batch_size * (sum(step_cpu) / len(step_cpu)) + \
        MOSEI_VALID_SAMPLES / batch_size * (sum(infer_cpu) / len(infer_cpu))
    return {
        "model": model_name,
        "shape": shape,
        "threads": threads,
        "precision": amp.name,
        "activation_checkpointing": bool(getattr(config, "activation_checkpointing", False)),
        "device": str(device),
        "batch_size": batch_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "mc_samples": getattr(config, "mc_samples", None),
        "train_step_s": step_times,
        "train_step_cpu_s": step_cpu,
        "infer_batch_s": infer_times,
        "infer_batch_cpu_s": infer_cpu,
        "train_samples_per_s": train_sps,
        "infer_samples_per_s": infer_sps,
        "train_epoch_min": train_epoch_s / 60.0,
        "valid_pass_min": valid_s / 60.0,
        "epoch_with_validation_min": (train_epoch_s + valid_s) / 60.0,
        "epoch_with_validation_cpu_min": cpu_epoch_s / 60.0,
        "rss_before_model_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        "cuda_peak_allocated_mib": (torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None,
        "profile": profiled,
    }


def environment(device: str) -> dict:
    import torch

    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_description(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "device": device,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def render_markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        f"# Throughput on {env['device']} ({env['cpu_model']}, {env['logical_cpus']} logical CPUs)",
        "",
        f"- date {env['date']}, git commit {env['git_commit']}, torch {env['torch_version']}, Python {env['python_version']}",
        f"- command: `python benchmarks/{env['command']}`",
        f"- default (paper) configs, MOSEI-shaped random features; epoch = {MOSEI_TRAIN_SAMPLES:,} training samples"
        f" (+ {MOSEI_VALID_SAMPLES:,} validation samples predicted), extrapolated from "
        f"{report['settings']['train_steps']} timed training steps after {report['settings']['warmup_steps']} warm-up"
        f" and {report['settings']['infer_batches']} inference batches",
        "- inference = `model.predict` (LAMB: Monte-Carlo dropout, `mc_samples` forward passes per batch)",
        f"- load average (1 min) before / after: {report['load_before'][0]:.1f} / {report['load_after'][0]:.1f}"
        " (shared machine: a loaded machine runs slower)",
        "- times in minutes are wall-clock; 'CPU time' is the CPU time the worker used (all its threads): on a"
        " machine shared with other work a 1-thread case needs at least that much wall time, and about that much unshared",
    ]
    if "gpu" in env:
        lines.append(f"- GPU: {env['gpu']}")
    lines += [
        "",
        "| model | shape | threads | precision | batch | train samples/s | train epoch (min) | infer samples/s | epoch + validation (min) | epoch + validation, CPU time (min) | peak RSS (MiB) |"
        + (" CUDA peak (MiB) |" if env["device"] == "cuda" else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if env["device"] == "cuda" else ""),
    ]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['shape']} | {r['threads']} | {r.get('precision', 'fp32')} | failed: {r['error']} |")
            continue
        precision = r.get("precision", "fp32") + (", act. checkpointing" if r.get("activation_checkpointing") else "")
        row = (f"| {r['model']} | {r['shape']} | {r['threads']} | {precision} | {r['batch_size']} | {r['train_samples_per_s']:.1f} | "
               f"{r['train_epoch_min']:.1f} | {r['infer_samples_per_s']:.1f} | {r['epoch_with_validation_min']:.1f} | "
               f"{r['epoch_with_validation_cpu_min']:.1f} | "
               f"{r['peak_rss_mib']:.0f} |")
        if env["device"] == "cuda":
            row += f" {r['cuda_peak_allocated_mib']:.0f} |"
        lines.append(row)
    profiled = [r for r in report["results"] if r.get("profile")]
    if profiled:
        lines += ["", "## Where a training step's time goes (torch.profiler, one step)", ""]
    for r in profiled:
        prof = r["profile"]
        phases = ", ".join(f"{k} {prof['phase_ms'].get(k, 0.0):.0f} ms" for k in PROFILE_PHASES)
        lines += [f"**{r['model']} {r['shape']}, {r['threads']} thread(s)**: {phases}", "",
                  "| operator | self CPU (ms) | calls | share |", "|---|---|---|---|"]
        lines += [f"| `{o['op']}` | {o['self_cpu_ms']:.0f} | {o['calls']} | {100 * o['share']:.0f}% |" for o in prof["top_ops"]]
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch CPU threads; one case per value")
    parser.add_argument("--models", nargs="+", default=None, help="registered models (default: all)")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--warmup-steps", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--infer-batches", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-limit-gib", type=float, default=None,
                        help="address-space limit of each case's process (RLIMIT_AS); a case that needs more "
                             "fails with an allocation error instead of pressing on a shared machine")
    parser.add_argument("--case-timeout", type=float, default=None,
                        help="seconds after which a case is stopped and reported as not finished")
    parser.add_argument("--profile", action="store_true",
                        help="profile one extra training step per case: time per phase and the top operators")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"],
                        help="one case per value (autocast as `mmer train --precision`)")
    parser.add_argument("--activation-checkpointing", choices=["off", "on", "both"], default="off",
                        help="LDDU's activation_checkpointing (training memory); both = one case each")
    parser.add_argument("--batch-size", type=int, default=None, help="instead of each config's (dry runs)")
    parser.add_argument("--tag", default="", help="suffix of the result files: throughput_<device><tag>.md")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # one case, in its own process; prints one JSON line
        if args.memory_limit_gib:
            limit = int(args.memory_limit_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        result = run_case(args.model, args.shape, args.threads[0], args.device, args.warmup_steps,
                          args.train_steps, args.infer_batches, args.seed, args.profile, args.precision,
                          args.checkpointing, args.batch_size)
        print(json.dumps(result))
        return 0

    from mmer.runtime import resolve_device
    from mmer.models.registry import model_names

    device = resolve_device(args.device).type
    models = args.models or model_names()
    load_before = os.getloadavg()
    results = []
    checkpointing = {"off": [False], "on": [True], "both": [False, True]}[args.activation_checkpointing]
    cases = [(m, s, t, p, c) for m in models for s in args.shapes for t in args.threads for p in args.precisions
             for c in (checkpointing if m == "lddu" else [False])]
    for model, shape, threads, precision, ckpt in cases:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", model, "--shape", shape,
                   "--threads", str(threads), "--device", device, "--warmup-steps", str(args.warmup_steps),
                   "--train-steps", str(args.train_steps), "--infer-batches", str(args.infer_batches),
                   "--seed", str(args.seed), "--precision", precision] + (["--profile"] if args.profile else []) \
            + (["--checkpointing"] if ckpt else []) \
            + (["--batch-size", str(args.batch_size)] if args.batch_size else [])
        if args.memory_limit_gib:
            command += ["--memory-limit-gib", str(args.memory_limit_gib)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT,
                                  timeout=args.case_timeout)
        except subprocess.TimeoutExpired:
            done = None
        if done is None:
            result = {"model": model, "shape": shape, "threads": threads, "precision": precision,
                      "error": f"did not finish within {args.case_timeout:.0f} s"}
        elif done.returncode != 0:
            error = (done.stderr.strip().splitlines() or ["no output"])[-1]
            result = {"model": model, "shape": shape, "threads": threads, "precision": precision, "error": error}
        else:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        summary = result.get("error") or (f"train {result['train_samples_per_s']:.1f} samples/s "
                                          f"(epoch {result['train_epoch_min']:.1f} min), infer "
                                          f"{result['infer_samples_per_s']:.1f} samples/s, peak RSS "
                                          f"{result['peak_rss_mib']:.0f} MiB")
        print(f"{model} {shape} threads={threads} {precision}{' checkpointing' if ckpt else ''}: {summary}",
              flush=True)
    report = {
        "environment": environment(device),
        "settings": {"warmup_steps": args.warmup_steps, "train_steps": args.train_steps,
                     "infer_batches": args.infer_batches, "seed": args.seed, "profile": args.profile,
                     "case_timeout_s": args.case_timeout, "memory_limit_gib": args.memory_limit_gib,
                     "train_samples": MOSEI_TRAIN_SAMPLES, "valid_samples": MOSEI_VALID_SAMPLES},
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "results": results,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"throughput_{device}{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(render_markdown(report))
    print(f"wrote {stem}.json and .md")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
