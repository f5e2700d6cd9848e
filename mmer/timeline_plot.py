"""`mmer analyze --plot`: a PNG timeline of per-window emotion probabilities (matplotlib, Agg).

The same reading as the HTML report's timeline: per emotion a step line (the probability of each
window), a band centred on it as tall as the uncertainty, dots on the windows where the emotion is
judged present, in the report's colour for that emotion; windows without any usable stream are
shaded grey and labelled "no signal" (their zeros are not an answer); x ticks on the window
boundaries."""

from __future__ import annotations

import math
import os
from pathlib import Path

from mmer.extractors.feature_cache import default_cache_dir
from mmer.results import ClipResult
from mmer.errors import UserError
from mmer.report_colours import emotion_colour

FIGURE_SIZE_IN = (9.0, 4.5)  # width, height in inches
DPI = 110
MAX_BOUNDARY_TICKS = 16
"""At most this many x ticks: every window boundary, or every n-th one for many windows."""
BAND_ALPHA, NO_SIGNAL_COLOUR = 0.15, "#9e9e9e"


def plot_timeline(result: ClipResult, path: Path) -> Path:
    """Draw one step line per emotion (probability of each window, held over the window) with its
    uncertainty band and a dot on the windows where the emotion is predicted present; shade the
    windows without a signal. Needs `result.segments`."""
    # matplotlib keeps its font cache in mmer's cache folder, not in ~/.cache and ~/.config
    os.environ.setdefault("MPLCONFIGDIR", str(default_cache_dir() / "matplotlib"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not result.segments:
        raise UserError("--plot needs per-window results: pass --window SECONDS")
    starts = [s.start_s for s in result.segments]
    ends = [s.end_s for s in result.segments]
    steps = starts + [ends[-1]]
    fig, ax = plt.subplots(figsize=FIGURE_SIZE_IN, dpi=DPI)
    try:
        for n, s in enumerate(s for s in result.segments if not s.signal):
            ax.axvspan(s.start_s, s.end_s, color=NO_SIGNAL_COLOUR, alpha=0.35, linewidth=0,
                       label="no signal" if n == 0 else None)
            ax.text(0.5 * (s.start_s + s.end_s), 0.5, "no signal", ha="center", va="center", rotation=90,
                    fontsize="x-small", color="#424242")
        for k, emotion in enumerate(result.emotions):
            colour = emotion_colour(k)
            probs = [s.emotions[k].probability for s in result.segments]
            uncertainty = [s.emotions[k].uncertainty for s in result.segments]
            signal = [s.signal for s in result.segments]
            # the band: the probability ± half the uncertainty, clipped to [0, 1] (as the HTML report)
            low = [max(0.0, p - u / 2) for p, u in zip(probs, uncertainty)]
            high = [min(1.0, p + u / 2) for p, u in zip(probs, uncertainty)]
            ax.fill_between(steps, low + [low[-1]], high + [high[-1]], step="post", color=colour, alpha=BAND_ALPHA,
                            linewidth=0, where=signal + [signal[-1]])
            # step plot: each window's probability held from its start to its end; no line where no signal
            line_probs = [p if ok else math.nan for p, ok in zip(probs, signal)]
            ax.step(steps, line_probs + [line_probs[-1]], where="post", label=emotion.label, color=colour)
            present = [(0.5 * (a + b), p) for a, b, p, s in zip(starts, ends, probs, result.segments)
                       if s.emotions[k].present]
            if present:
                ax.plot(*zip(*present), "o", color=colour, markersize=4, clip_on=False)
        stride = max(1, math.ceil(len(steps) / MAX_BOUNDARY_TICKS))
        ax.set_xticks(steps[::stride])
        ax.set_xticklabels([f"{round(t, 2):g}" for t in steps[::stride]], fontsize="small")
        ax.set_xlim(0.0, max(ends[-1], 1e-3))
        ax.set_ylim(0.0, 1.0)  # dots at 1.0 stay whole (clip_on=False)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("probability")
        ax.set_title(f"{Path(result.file).name}: {result.model}, windows of {ends[0] - starts[0]:g} s "
                     "(dots: present; bands: uncertainty)")
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
