"""The dashboard's charts, drawn server-side by matplotlib (Agg) into PNG bytes.

Each function takes plain numbers (from ``status.json`` and a model's
metadata) and returns a PNG; nothing here reads files or knows about HTTP.
matplotlib is imported on first use, so processes that never draw a chart
never pay for it.

Names (labels, channels, controls) come from a project's label config: every
drawing runs under ``_drawing``, which turns off mathtext and TeX for all of
its text (titles, ticks, legends, annotations), so ``$x^2$`` is drawn as
written and ``$_$`` cannot fail a chart.  What a chart costs grows at most
linearly with the labels: the confusion matrix writes its cells' numbers only
up to ``ANNOTATED_CLASSES`` classes (colours alone past that).  ``STYLE``
names the drawing code: chart caches key on it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from segmenter.service.dashboard.task_view import TaskView

WIDTH, HEIGHT, DPI = 6.4, 3.2, 100
STYLE = "2"  # bump when a chart is drawn differently: cached PNGs of the old drawing are then not served
ANNOTATED_CLASSES = 12  # confusion cells carry their numbers up to this many classes (144 cells)
_PLAIN_TEXT = {"text.usetex": False, "text.parse_math": False}
_lock = threading.Lock()  # matplotlib's font cache, text layout and rcParams are not thread-safe
_warmed = False


@contextmanager
def _drawing() -> Iterator[None]:
    """One chart at a time, every text in it plain (no mathtext, no TeX): names are drawn as written."""
    import matplotlib

    with _lock, matplotlib.rc_context(_PLAIN_TEXT):
        yield


def _figure(layout: str | None = "constrained") -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, layout=layout)


def _draw_once() -> None:
    with _drawing():
        fig = _figure(layout=None)
        fig.add_subplot().plot([0, 1], label="warm-up")  # loads fonts and lays out text once
        fig.axes[0].legend()
        _png(fig)


def _claim_warm_up() -> bool:
    """Whether this call is the process's first warm-up (inherited by forked workers)."""
    global _warmed
    with _lock:
        first, _warmed = not _warmed, True
    return first


def warm_up() -> None:
    """Import matplotlib and draw a small figure in a background thread, once per process, so the
    charts a page asks for next do not pay for the import (0.5 s on 2 cores) on the way."""
    if _claim_warm_up():
        threading.Thread(target=_draw_once, name="charts-warm-up", daemon=True).start()


def preload() -> None:
    """``warm_up`` done now, in this thread: gunicorn's master calls it before forking, so every
    worker starts with matplotlib loaded (pages shared copy-on-write) and no worker's first chart waits."""
    if _claim_warm_up():
        _draw_once()


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})  # fast to encode, a little larger
    return buffer.getvalue()


def learning_curve(points: list[dict]) -> bytes:
    """Validation scores against annotated tasks, one point per training (``history`` entries)."""
    with _drawing():
        fig = _figure()
        ax = fig.add_subplot()
        tasks = [p["tasks"] for p in points]
        for key, label in (("balanced_accuracy", "balanced accuracy"), ("min_class_f1", "min class F1")):
            ax.plot(tasks, [p[key] for p in points], marker="o", label=label)
        ax.set_xlabel("annotated tasks learned from")
        ax.set_ylabel("validation score")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        ax.set_title("Learning curve (one point per training)")
        return _png(fig)


def bars(values: dict[str, float], title: str, xlabel: str, limit: float | None = None) -> bytes:
    """A horizontal bar per label (per-label F1, class balance)."""
    with _drawing():
        fig = _figure()
        ax = fig.add_subplot()
        names = list(values)
        ax.barh(names, [values[n] for n in names], color="#4c72b0")
        ax.invert_yaxis()
        if limit is not None:
            ax.set_xlim(0, limit)
        for i, n in enumerate(names):
            ax.annotate(f"{values[n]:,.3g}", (values[n], i), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        return _png(fig)


def confusion(classes: list[str], rows: list[list[int]]) -> bytes:
    """The validation confusion matrix as row shares (each true class sums to 1), with row counts
    written in the cells up to ``ANNOTATED_CLASSES`` classes; past that, colours and names only."""
    import numpy as np

    counts = np.asarray(rows, dtype=np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    with _drawing():
        fig = _figure()
        grow = min(max(n / ANNOTATED_CLASSES, 1.0), 3.0)  # room for the names, bounded
        fig.set_size_inches(WIDTH * 0.8 * grow, HEIGHT * 1.3 * grow)
        ax = fig.add_subplot()
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        names = ["background" if c == "__background__" else c for c in classes]
        small = 7 if n <= ANNOTATED_CLASSES else max(4.0, 7 - n / 40)
        ax.set_xticks(range(n), names, rotation=30 if n <= ANNOTATED_CLASSES else 90,
                      ha="right" if n <= ANNOTATED_CLASSES else "center", fontsize=small + 1)
        ax.set_yticks(range(n), names, fontsize=small + 1)
        if n <= ANNOTATED_CLASSES:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, f"{shares[i, j]:.2f}\n{int(counts[i, j]):,}", ha="center", va="center",
                            fontsize=7, color="white" if shares[i, j] > 0.6 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("annotated")
        ax.set_title("Validation confusion (share of annotated rows)")
        fig.colorbar(image, ax=ax, shrink=0.8)
        return _png(fig)


def training_curve(curve: list[list[float]], best_epoch: int | None) -> bytes:
    """Losses (left axis) and validation scores (right axis) per epoch of one training."""
    with _drawing():
        fig = _figure()
        ax = fig.add_subplot()
        epochs = [row[0] for row in curve]
        ax.plot(epochs, [row[1] for row in curve], label="train loss", color="#dd8452")
        ax.plot(epochs, [row[2] for row in curve], label="validation loss", color="#c44e52")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        scores = ax.twinx()
        scores.plot(epochs, [row[3] for row in curve], label="balanced accuracy", color="#4c72b0")
        scores.plot(epochs, [row[4] for row in curve], label="min class F1", color="#55a868")
        scores.set_ylim(0, 1.02)
        scores.set_ylabel("validation score")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle="--", label=f"kept: epoch {best_epoch}")
        lines = ax.get_legend_handles_labels()
        more = scores.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center right")
        ax.set_title("Latest training, per epoch")
        return _png(fig)


def task_chart(view: TaskView) -> bytes:
    """One target of a task: channels (min-max per column), annotated and predicted classes one
    above the other, and each label's probability."""
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    with _drawing():
        # Fixed margins: a layout engine would draw the figure twice, and this one must be fast.
        fig = _figure(layout=None)
        fig.set_size_inches(WIDTH * 1.8, HEIGHT * 2.2)
        grid = fig.add_gridspec(3, 1, height_ratios=[3, 1, 2], left=0.09, right=0.98, top=0.95, bottom=0.08,
                                hspace=0.25)
        values = fig.add_subplot(grid[0])
        x = view.x
        for c, name in enumerate(view.channels):
            line, = values.plot(x, (view.low[:, c] + view.high[:, c]) / 2, linewidth=0.8, label=name)
            values.fill_between(x, view.low[:, c], view.high[:, c], color=line.get_color(), alpha=0.3, linewidth=0)
        values.set_ylabel("value")
        values.legend(fontsize=8, loc="upper right")
        values.set_title(f"{view.target}: {view.rows:,} rows" + (
            f" (shown as {len(x):,} columns, min-max each)" if len(x) < view.rows else ""))

        palette = ["#ffffff", "#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3"]
        cmap = ListedColormap([palette[i % len(palette)] if i else palette[0] for i in range(len(view.labels))])
        bands = fig.add_subplot(grid[1], sharex=values)
        rows = [view.predicted] if view.annotated is None else [view.annotated, view.predicted]
        names = ["predicted"] if view.annotated is None else ["annotated", "predicted"]
        end = view.rows
        bands.imshow(np.vstack(rows), aspect="auto", interpolation="nearest", cmap=cmap,
                     vmin=0, vmax=len(view.labels) - 1, extent=(0, end, len(rows) - 0.5, -0.5))
        bands.set_yticks(range(len(rows)), names)
        handles = [Patch(color=cmap(i), label=name) for i, name in enumerate(view.labels) if i]
        bands.legend(handles=handles, fontsize=8, loc="upper right", ncols=len(handles))

        probs = fig.add_subplot(grid[2], sharex=values)
        for i, name in enumerate(view.labels):
            if i:
                probs.plot(x, view.probabilities[:, i], color=cmap(i), linewidth=0.9, label=name)
        probs.set_ylim(0, 1.02)
        probs.set_ylabel("probability")
        probs.set_xlabel("row")
        probs.set_xlim(0, end)
        return _png(fig)

