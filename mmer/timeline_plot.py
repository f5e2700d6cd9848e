"""`mmer analyze --plot`: a PNG timeline of per-window emotion probabilities (matplotlib, Agg)."""

from __future__ import annotations

import os
from pathlib import Path

from mmer.extractors.feature_cache import default_cache_dir
from mmer.analysis import ClipResult
from mmer.errors import UserError

FIGURE_SIZE_IN = (9.0, 4.5)  # width, height in inches
DPI = 110


def plot_timeline(result: ClipResult, path: Path) -> Path:
    """Draw one step line per emotion (probability of each window, held over the window) with a
    dot on the windows where the emotion is predicted present. Needs `result.segments`."""
    # matplotlib keeps its font cache in mmer's cache folder, not in ~/.cache and ~/.config
    os.environ.setdefault("MPLCONFIGDIR", str(default_cache_dir() / "matplotlib"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not result.segments:
        raise UserError("--plot needs per-window results: pass --window SECONDS")
    starts = [s.start_s for s in result.segments]
    ends = [s.end_s for s in result.segments]
    fig, ax = plt.subplots(figsize=FIGURE_SIZE_IN, dpi=DPI)
    try:
        for k, emotion in enumerate(result.emotions):
            probs = [s.emotions[k].probability for s in result.segments]
            # step plot: each window's probability held from its start to its end
            line, = ax.step(starts + [ends[-1]], probs + [probs[-1]], where="post", label=emotion.label)
            present = [(0.5 * (a + b), p) for a, b, p, s in zip(starts, ends, probs, result.segments)
                       if s.emotions[k].present]
            if present:
                ax.plot(*zip(*present), "o", color=line.get_color(), markersize=4)
        ax.set_xlim(0.0, max(ends[-1], 1e-3))
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("probability")
        ax.set_title(f"{Path(result.file).name}: {result.model}, windows of {ends[0] - starts[0]:g} s (dots: present)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
        fig.tight_layout()
        path = Path(path)
        try:
            fig.savefig(path)
        except OSError as err:
            raise UserError(f"--plot {path}: cannot write ({err.strerror or err})") from None
    finally:
        plt.close(fig)
    return path


def plot_paths(plot: Path, results: list[ClipResult]) -> list[tuple[ClipResult, Path]]:
    """Where each clip's plot goes: inside PLOT when it is an existing folder, as <clip stem>.png;
    else PLOT itself for one clip, and PLOT's stem + '_' + clip stem beside it for several.
    Folders are never created (the caller checks that PLOT's folder exists)."""
    plot = Path(plot)
    if plot.is_dir():
        def name(stem: str) -> Path:
            return plot / f"{stem}.png"
    elif len(results) == 1:
        return [(results[0], plot)]
    else:
        def name(stem: str) -> Path:
            return plot.with_name(f"{plot.stem}_{stem}{plot.suffix or '.png'}")
    pairs, used = [], set()
    for r in results:
        candidate = name(Path(r.file).stem)
        n = 2
        while candidate in used:
            candidate = name(f"{Path(r.file).stem}_{n}")
            n += 1
        used.add(candidate)
        pairs.append((r, candidate))
    return pairs
