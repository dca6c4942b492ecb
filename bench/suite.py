"""Accuracy and stability over several data sets, leave-recordings-out over folds x seeds.

    .venv/bin/python -m bench.suite [--quick] [--sets basicmotions gunpoint ...] [--folds 3] [--seeds 0 1 2]
                                    [--jobs 2] [--plot docs/suite.png] [--json docs/suite.json]

Real recordings from the ``aeon`` wheel (UCR/UEA, both splits pooled, a seeded stratified
subset) are laid end to end into labelled series as ``bench.basicmotions`` does for
BasicMotions: the first class is background, every other class a range label.  The
recordings are dealt into ``--folds`` folds (each class spread evenly); each fold's
recordings are the test series of one run, the others the training series.  A test series
begins part-way into its first recording (``unaligned``): recordings of one length laid end
to end from row 0 line up with the grid of prediction windows, which a real series does not
(it keeps at least half of that recording: a few rows of one would be an event no annotator marks).  The synthetic
(``harness.synthetic``: ranges and instants) and layered (overlapping labels) sets are
folded by whole recordings.  Every (set, fold, seed) trains with the project's
``train_project`` at the default settings (only the seed changes) and is scored by
``evaluation.score`` as ``python -m segmenter evaluate`` does.

Per set it prints the mean, worst and spread (max - min over folds x seeds) of timestep
macro-F1 and event F1@IoU0.5, the training seconds, the saved model's size and the
expected calibration error (ECE, 10 bins) of the row probabilities (top class vs the
annotated one; layered: each label's present/absent) and of the region scores (a region
is right when a true event of its label overlaps it at IoU >= 0.5).  Targets (issue 18):
mean macro-F1 >= 0.93, worst event F1 >= 0.85, spread <= 0.10, layered every label >= 0.95.  ``--jobs`` runs that many
trainings at once, one torch thread each.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import basicmotions
from harness import synthetic
from segmenter.config import TrainingSettings

ROOT = Path(__file__).resolve().parents[1]
PER_SERIES = 10  # recordings per series, as bench.basicmotions
DATA_SEED = 1234  # which recordings, in which fold and order: the same for every training seed
ECE_BINS = 10
TARGETS = {"macro_mean": 0.93, "event_worst": 0.85, "event_spread": 0.10, "layered_label": 0.95}


@dataclass(frozen=True)
class Source:
    """A UCR/UEA data set of the aeon wheel and how many recordings the suite draws from it."""

    name: str  # aeon's name
    limit: int  # recordings drawn from both splits pooled
    what: str  # one line for the table


SOURCES = {
    "basicmotions": Source("BasicMotions", 80, "6 ch, 100 rows/recording, 3 labels + background"),
    "gunpoint": Source("GunPoint", 120, "1 ch, 150 rows, 1 label + background"),
    "arrowhead": Source("ArrowHead", 120, "1 ch, 251 rows, 2 labels + background"),
    "japanesevowels": Source("JapaneseVowels", 360, "12 ch, 7-29 rows, 8 labels + background"),
    "italypower": Source("ItalyPowerDemand", 300, "1 ch, 24 rows, 1 label + background"),
}
SYNTHETIC = {"synthetic": "2 ch, 9 x 1200 rows, Run/Walk ranges + Spike instants",
             "layered": "3 ch, 9 x 1200 rows, Run/Walk + overlapping Alarm"}
QUICK = ("basicmotions", "gunpoint", "layered")


@dataclass
class Fold:
    """One run's data: label config, training and test tasks, their files."""

    config: str
    train: list[dict]
    test: list[dict]
    files: synthetic.MemoryFiles


def label_config(labels: list[str], channels: tuple[str, ...]) -> str:
    """A Label Studio config for ``labels`` over ``channels`` with a numeric time column."""
    return (
        '<View><TimeSeriesLabels name="label" toName="ts">'
        + "".join(f'<Label value="{v}"/>' for v in labels)
        + '</TimeSeriesLabels><TimeSeries name="ts" valueType="url" value="$csv_url" timeColumn="time">'
        + "".join(f'<Channel column="{c}"/>' for c in channels)
        + "</TimeSeries></View>"
    )


def deal(classes: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A fold number for every recording, each class spread evenly over the folds."""
    fold = np.zeros(len(classes), dtype=np.int64)
    for c in np.unique(classes):
        members = rng.permutation(np.flatnonzero(classes == c))
        fold[members] = (np.arange(len(members)) + int(rng.integers(k))) % k
    return fold


@dataclass
class Draw:
    """The recordings one aeon data set lends the suite, and how each fold lays them into series."""

    x: list[np.ndarray]  # (channels, rows) per recording
    y: np.ndarray  # its class
    series: list[dict[str, list[np.ndarray]]]  # per fold, "train" / "test" -> recording indices of each series

    @property
    def classes(self) -> list[str]:
        """The classes in label order; the first is background."""
        return sorted(np.unique(self.y), key=lambda c: (len(c), c))


def draw(key: str, k: int) -> Draw:
    """The recordings of one aeon data set, drawn, dealt into ``k`` folds and ordered, the same at every call."""
    from aeon.datasets import load_classification

    source = SOURCES[key]
    parts = [load_classification(source.name, split=s) for s in ("train", "test")]
    x = [np.asarray(r, dtype=np.float64) for xs, _ in parts for r in xs]
    y = np.concatenate([np.asarray(ys).astype(str) for _, ys in parts])
    rng = np.random.default_rng(DATA_SEED)
    chosen = np.sort(rng.permutation(len(y))[: source.limit])  # uniform draw keeps the class balance
    x, y = [x[i] for i in chosen], y[chosen]
    fold_of = deal(y, k, rng)
    series = []
    for f in range(k):
        parts_of = {}
        for part, members in (("train", np.flatnonzero(fold_of != f)), ("test", np.flatnonzero(fold_of == f))):
            members = rng.permutation(members)
            parts_of[part] = [members[s : s + PER_SERIES] for s in range(0, len(members), PER_SERIES)]
        series.append(parts_of)
    return Draw(x, y, series)


def unaligned(frame: pd.DataFrame, regions: list[dict], rows: int) -> tuple[pd.DataFrame, list[dict]]:
    """``frame`` without its first ``rows`` rows, and ``regions`` cut to what is left (the time column,
    a row index, keeps its numbers, so the regions' start and end still name their rows)."""
    kept = [{**r, "value": {**r["value"], "start": max(r["value"]["start"], rows)}}
            for r in regions if r["value"]["end"] >= rows]
    return frame.iloc[rows:].reset_index(drop=True), kept


def leads(d: Draw, fold: int) -> list[int]:
    """The rows each test series of ``fold`` drops of its first recording (``unaligned``): 1 to half of it."""
    rng = np.random.default_rng([DATA_SEED, fold])
    return [int(rng.integers(1, d.x[group[0]].shape[1] // 2 + 1)) for group in d.series[fold]["test"]]


def recording_folds(key: str, k: int) -> list[Fold]:
    """The ``k`` leave-recordings-out folds of one aeon data set."""
    d = draw(key, k)
    classes = d.classes
    names = {c: (None if n == 0 else f"c{c}") for n, c in enumerate(classes)}
    channels = tuple(f"ch{c + 1}" for c in range(d.x[0].shape[0]))
    config = label_config([names[c] for c in classes[1:]], channels)
    out = []
    for f, parts in enumerate(d.series):
        files, split = synthetic.MemoryFiles(), {}
        dropped = iter(leads(d, f))
        for part, groups in parts.items():
            tasks = []
            for s, group in zip(range(0, PER_SERIES * len(groups), PER_SERIES), groups):
                frame, regions = basicmotions.concatenate(
                    [d.x[i] for i in group], [names[d.y[i]] for i in group], channels, f"f{f}{part}{s}"
                )
                if part == "test":
                    frame, regions = unaligned(frame, regions, next(dropped))
                name = f"{part}{s}.csv"
                files[name] = frame.to_csv(index=False).encode()
                tasks.append({"id": len(tasks) + 1, "data": {"csv_url": name},
                              "annotations": [{"id": len(tasks) + 1, "result": regions}]})
            split[part] = tasks
        out.append(Fold(config, split["train"], split["test"], files))
    return out


def synthetic_folds(key: str, k: int, count: int = 9, rows: int = 1200) -> list[Fold]:
    """The ``k`` leave-recordings-out folds of the synthetic or the layered set."""
    if key == "layered":
        config = synthetic.layered_config()
        tasks, files = synthetic.layered_tasks(count, rows, seed=DATA_SEED)
    else:
        config = synthetic.label_config(channels=2, with_spikes=True)
        tasks, files = synthetic.annotated_tasks(count, rows, seed=DATA_SEED, n_events=8, spikes=3)
    fold_of = np.arange(count) % k
    return [
        Fold(config, [t for t, g in zip(tasks, fold_of) if g != f], [t for t, g in zip(tasks, fold_of) if g == f],
             files)
        for f in range(k)
    ]


def folds_of(key: str, k: int) -> list[Fold]:
    return synthetic_folds(key, k) if key in SYNTHETIC else recording_folds(key, k)


def ece(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the row-weighted mean |confidence - accuracy| over equal-width bins."""
    if len(confidence) == 0:
        return float("nan")
    which = np.clip((confidence * bins).astype(np.int64), 0, bins - 1)
    n = np.bincount(which, minlength=bins)
    conf = np.bincount(which, confidence, minlength=bins)
    hits = np.bincount(which, correct.astype(np.float64), minlength=bins)
    seen = n > 0
    return float(np.sum(np.abs(conf[seen] - hits[seen])) / len(confidence))


def region_hits(regions: list[dict], truth_layers: dict[str, np.ndarray], time: np.ndarray) -> list[tuple[float, bool]]:
    """(score, right) of every predicted region: right when a true run of its label has IoU >= 0.5 with it."""
    from segmenter.learning.evaluation import IOU_THRESHOLD
    from segmenter.learning.regions import run_lengths

    out = []
    for region in regions:
        v = region["value"]
        label = v["timeserieslabels"][0]
        start, end = np.searchsorted(time, [v["start"], v["end"]])
        seg = run_lengths(truth_layers[label])
        keep = seg.classes == 1
        inter = np.minimum(seg.ends[keep], end) - np.maximum(seg.starts[keep], start) + 1
        union = np.maximum(seg.ends[keep], end) - np.minimum(seg.starts[keep], start) + 1
        iou = np.where(inter > 0, inter / union, 0.0)
        out.append((float(region["score"]), bool(len(iou) and iou.max() >= IOU_THRESHOLD)))
    return out


def calibration(model, tasks: list[dict], files: synthetic.MemoryFiles) -> dict:
    """ECE of the row probabilities and of the region scores."""
    from segmenter.reading.annotations import choose_annotation, row_labels
    from segmenter.reading.task_series import read_task_series

    rows, regions = [], []
    for task in tasks:
        series = read_task_series(task, model.target, files)
        truth = row_labels(series, choose_annotation(task)["result"], model.target, task["id"])
        probs = model.probabilities(series)
        if model.multi_label:
            bits = (truth.presence[:, None] >> np.arange(len(model.target.labels))[None, :]) & 1
            rows.append((np.maximum(probs, 1 - probs).ravel(), ((probs > 0.5) == (bits == 1)).ravel()))
            layers = {label: bits[:, k] for k, label in enumerate(model.target.labels)}
        else:
            rows.append((probs.max(axis=1), probs.argmax(axis=1) == truth.class_ids))
            layers = {label: (truth.class_ids == k + 1).astype(np.int64) for k, label in enumerate(model.target.labels)}
        predicted, _ = model.results(series, None, probs)
        regions += region_hits(predicted, layers, series.time)
    scores = np.array([s for s, _ in regions])
    right = np.array([r for _, r in regions])
    return {
        "ece_rows": round(ece(*map(np.concatenate, zip(*rows))), 4),
        "ece_regions": round(ece(scores, right), 4),
    }


def run_one(key: str, fold: int, k: int, seed: int, overrides: dict) -> dict:
    """Train on all folds but ``fold`` of set ``key`` with ``seed`` (and ``overrides`` of the
    training settings), score on ``fold``."""
    import torch

    from segmenter.learning.evaluation import score
    from segmenter.learning.training import train_project

    torch.set_num_threads(1)
    data = folds_of(key, k)[fold]
    started = time.perf_counter()
    [model] = train_project(data.config, data.train, data.files, TrainingSettings(seed=seed, **overrides))
    seconds = time.perf_counter() - started
    report = score([model], data.test, data.files)
    buffer = io.BytesIO()
    torch.save(model.to_state(), buffer)
    info = {k_: model.info.get(k_) for k_ in ("epochs", "best_epoch", "stopped_because")}
    return {
        "set": key, "fold": fold, "seed": seed,
        "macro_f1": report["timestep_macro_f1"], "event_f1": report["event_f1_iou50"],
        "per_label_event_f1": report.get("per_label_event_f1_iou50"),
        "train_seconds": round(seconds, 2), "model_kb": round(len(buffer.getvalue()) / 1024, 1),
        "rows_trained": model.info["data"]["rows"], **info,
        # the first network's validation rows: can they tell which settings win on the test rows?
        "val_loss": model.info["validation"]["loss"],
        "val_balanced_accuracy": model.info["validation"]["balanced_accuracy"],
        **calibration(model, data.test, data.files),
    }


def summarise(runs: list[dict]) -> dict:
    """Mean, worst and spread of the scores over one set's runs, and its cost and calibration."""
    return {
        **scores(runs),
        "train_s_mean": round(statistics.fmean(r["train_seconds"] for r in runs), 1),
        "train_s_max": max(r["train_seconds"] for r in runs),
        "model_kb": max(r["model_kb"] for r in runs),
        "ece_rows": round(statistics.fmean(r["ece_rows"] for r in runs), 3),
        "ece_regions": round(statistics.fmean(r["ece_regions"] for r in runs if not np.isnan(r["ece_regions"])), 3),
    }


def scores(runs: list[dict]) -> dict:
    """Mean, worst and spread of macro-F1 and event F1 over one set's runs, and each label's worst event F1."""
    macro = [r["macro_f1"] for r in runs]
    event = [r["event_f1"] for r in runs]
    out = {
        "runs": len(runs),
        "macro_mean": round(statistics.fmean(macro), 3), "macro_worst": min(macro),
        "macro_spread": round(max(macro) - min(macro), 3),
        "event_mean": round(statistics.fmean(event), 3), "event_worst": min(event),
        "event_spread": round(max(event) - min(event), 3),
    }
    labels: dict[str, list[float]] = {}
    for r in runs:
        for name, f1 in (r["per_label_event_f1"] or {}).items():
            labels.setdefault(name.split(":")[-1], []).append(f1)
    if labels:
        out["label_event_worst"] = {name: min(v) for name, v in labels.items()}
    return out


def table(summary: dict[str, dict]) -> str:
    """The per-set results as a Markdown table."""
    lines = [
        "| set | runs | macro-F1 mean / worst / spread | event F1 mean / worst / spread | train s mean (max) "
        "| model KB | ECE rows | ECE regions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, s in summary.items():
        lines.append(
            f"| {key} | {s['runs']} | {s['macro_mean']:.3f} / {s['macro_worst']:.3f} / {s['macro_spread']:.3f} "
            f"| {s['event_mean']:.3f} / {s['event_worst']:.3f} / {s['event_spread']:.3f} "
            f"| {s['train_s_mean']:.1f} ({s['train_s_max']:.1f}) | {s['model_kb']:.0f} "
            f"| {s['ece_rows']:.3f} | {s['ece_regions']:.3f} |"
        )
    return "\n".join(lines)


def met(key: str, s: dict) -> list[str]:
    """The issue's targets this set misses."""
    misses = []
    if s["macro_mean"] < TARGETS["macro_mean"]:
        misses.append(f"mean macro-F1 {s['macro_mean']:.3f} < {TARGETS['macro_mean']}")
    if s["event_worst"] < TARGETS["event_worst"]:
        misses.append(f"worst event F1 {s['event_worst']:.3f} < {TARGETS['event_worst']}")
    if s["event_spread"] > TARGETS["event_spread"]:
        misses.append(f"event F1 spread {s['event_spread']:.3f} > {TARGETS['event_spread']}")
    for name, f1 in (s.get("label_event_worst") or {}).items():
        if f1 < TARGETS["layered_label"]:
            misses.append(f"{name} worst event F1 {f1:.3f} < {TARGETS['layered_label']}")
    return misses


def plot(runs: list[dict], keys: list[str], path: Path, title: str) -> None:
    """Every run's macro-F1 and event F1 per set (dots), their means (bars) and the targets (lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, metric, target, name in ((axes[0], "macro_f1", TARGETS["macro_mean"], "timestep macro-F1"),
                                     (axes[1], "event_f1", TARGETS["event_worst"], "event F1 @ IoU 0.5")):
        for i, key in enumerate(keys):
            values = [r[metric] for r in runs if r["set"] == key]
            ax.bar(i, statistics.fmean(values), color="#cfd8e3", width=0.6)
            jitter = np.linspace(-0.2, 0.2, len(values))
            ax.scatter(i + jitter, values, s=12, color="#1f4e79", zorder=3)
        ax.axhline(target, color="#c0392b", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(keys)), keys, rotation=30, ha="right")
        ax.set_title(name)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("score per fold x seed (dots), mean (bar)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def setting(defaults: TrainingSettings, name: str, text: str) -> object:
    """The value of training setting ``name`` written as ``text`` on the command line, typed as its default
    (a flag: true/false, yes/no, on/off or 1/0; a setting unset by default, such as ``sequence_size``: a whole
    number)."""
    default = getattr(defaults, name)
    if default is None:
        return int(text)
    if isinstance(default, bool):
        word = text.strip().lower()
        if word not in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            raise SystemExit(f"--set {name}={text}: say true or false")
        return word in ("true", "yes", "on", "1")
    return type(default)(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"sets {', '.join(QUICK)}, seed 0 only")
    parser.add_argument("--sets", nargs="+", choices=[*SOURCES, *SYNTHETIC])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once (one torch thread each)")
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE",
                        help="training settings other than the defaults, e.g. patience=60 (to compare)")
    parser.add_argument("--plot", type=Path, help="write the plot here (PNG)")
    parser.add_argument("--json", type=Path, help="write every run and the summary here")
    args = parser.parse_args()
    keys = args.sets or (list(QUICK) if args.quick else [*SOURCES, *SYNTHETIC])
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    defaults = TrainingSettings()
    overrides = {name: setting(defaults, name, value) for name, value in (o.split("=", 1) for o in args.set)}
    jobs = [(key, f, args.folds, seed, overrides) for key in keys for f in range(args.folds) for seed in seeds]
    started = time.perf_counter()
    runs: list[dict] = []
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for run in pool.map(_star, jobs):
            runs.append(run)
            print(json.dumps(run), flush=True)
    wall = time.perf_counter() - started
    summary = {key: summarise([r for r in runs if r["set"] == key]) for key in keys}
    print(table(summary))
    for key in keys:
        misses = met(key, summary[key])
        print(f"{key}: {'all targets met' if not misses else '; '.join(misses)}")
    load = os.getloadavg()[0]
    settings = " ".join(args.set) or "default settings"
    conditions = (f"{settings}, {len(runs)} runs ({args.folds} folds x seeds {', '.join(map(str, seeds))}), "
                  f"{args.jobs} at once, {wall / 60:.1f} min wall, load average {load:.1f} "
                  f"on {os.cpu_count()} cores shared with other work")
    print(conditions)
    if args.plot:
        plot(runs, keys, args.plot, f"bench.suite {time.strftime('%Y-%m-%d')}: {conditions}")
    if args.json:
        args.json.write_text(json.dumps({"conditions": conditions, "summary": summary, "runs": runs}, indent=1))


def _star(job: tuple) -> dict:
    return run_one(*job)


if __name__ == "__main__":
    main()
