"""Does the task score save annotation work?  The Label Studio loop, simulated.

    .venv/bin/python -m bench.active_learning [--seeds 0 1 2] [--datasets rare basicmotions] [--quick]

Start from one annotated task.  Each round trains on the annotated tasks
(``train_project``, the service's training), records the held-out macro-F1 and
event F1 (``evaluation.score``), and "annotates" the next ``k`` tasks of the
unlabelled pool by copying their ground truth, chosen either

* by the task score, least certain first: the pool is predicted with
  ``inference.predict_tasks``, so the score is exactly the one ``/predict``
  sends to Label Studio's "Prediction score" column; or
* by the task score as it was before ``segmenter/learning/novelty.py`` (class
  probabilities only: the same models with their ``reference`` left out); or
* at random.

Both strategies start from the same task per seed and share its first model.
Two data sets: BasicMotions-style recordings (each task a few BasicMotions
recordings one after another) and a synthetic set where a small fraction of
the recordings hold a rare "Fall" event, where a random sampler often misses
the tasks that matter.  Prints the curves (mean, min and max over seeds) and
how many annotated tasks each strategy needs to reach macro-F1 0.95, writes
``docs/active_learning.json`` and the plot ``docs/active_learning.png``.  For the task-score
strategy it also counts, round by round, how many pool tasks get the same prediction from the
new model as from the previous one (the same regions, the score within ``SAME_SCORE``): the
writes a write-back could leave out if Label Studio kept scoring older versions' predictions.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.basicmotions import CHANNELS, LABEL_CONFIG, LABELS, build_series
from harness.synthetic import MemoryFiles, annotation, csv_bytes, make_recording
from segmenter.config import Settings, TrainingSettings, bootstrap
from segmenter.learning.evaluation import score
from segmenter.learning.inference import predict_tasks
from segmenter.learning.training import train_project

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.95
SAME_SCORE = 0.005  # scores this close show the same in Label Studio's column (two decimals)
STRATEGIES = ("score", "softmax", "random")
NAMES = {"score": "task score, least certain first", "softmax": "class probabilities only (score before novelty)",
         "random": "random"}
RARE_LABEL = "Fall"
RARE_CONFIG = (
    '<View><TimeSeriesLabels name="label" toName="ts">'
    + "".join(f'<Label value="{v}"/>' for v in ("Run", "Walk", RARE_LABEL))
    + '</TimeSeriesLabels><TimeSeries name="ts" valueType="url" value="$csv_url" timeColumn="time">'
    + '<Channel column="sensor1"/><Channel column="sensor2"/></TimeSeries></View>'
)


@dataclass
class Dataset:
    """An unlabelled pool (with its hidden ground truth), a held-out test set and where to start."""

    name: str
    config: str
    pool: list[dict]
    test: list[dict]
    files: MemoryFiles
    start: int  # index into ``pool`` of the one task annotated before the first round
    rare: set[int]  # pool indices of the tasks holding the rare class (empty: none is rare)


def task(task_id: int, name: str, result: list[dict]) -> dict:
    """An exported task whose ground truth is its one annotation."""
    return {"id": task_id, "data": {"csv_url": name}, "annotations": [{"id": task_id, "result": result}]}


def rare_recording(rows: int, seed: int, rare: bool) -> tuple[bytes, list[dict]]:
    """A Run/Walk recording; when ``rare``, its first Walk becomes a Fall (a negative square wave)."""
    rec = make_recording(rows, seed, channels=2, n_events=4, event_rows=(30, 80))
    if rare:
        walks = [e for e in rec.events if e[2] == "Walk"]
        start, end, _ = walks[0]
        phase = np.arange(end - start + 1)
        walk = 0.8 + 0.6 * np.sin(2 * np.pi * phase / 20.0)  # as make_recording planted it
        fall = -1.2 + 0.9 * np.sign(np.sin(2 * np.pi * (phase + 0.5) / 10.0))
        cols = ["sensor1", "sensor2"]
        rec.frame.loc[start:end, cols] = rec.frame.loc[start:end, cols].to_numpy() + (fall - walk)[:, None]
        rec.events = [(s, e, RARE_LABEL if (s, e) == (start, end) else label) for s, e, label in rec.events]
    return csv_bytes(rec), annotation(rec)


def rare_event_set(seed: int, pool_size: int, rare_fraction: float, test_size: int, rows: int) -> Dataset:
    """Synthetic pool where ``rare_fraction`` of the recordings hold one Fall; the test set holds Falls in 3."""
    rng = np.random.default_rng([seed, 7])
    n_rare = max(1, round(pool_size * rare_fraction))
    rare = set(rng.choice(pool_size, n_rare, replace=False).tolist())
    files, pool, test = MemoryFiles(), [], []
    for i in range(pool_size + test_size):
        is_rare = i in rare if i < pool_size else i - pool_size < 3
        name = f"s{seed}_{i}.csv"
        files[name], result = rare_recording(rows, seed * 10_000 + i, is_rare)
        (pool if i < pool_size else test).append(task(i + 1, name, result))
    start = int(rng.choice(sorted(set(range(pool_size)) - rare)))
    return Dataset("rare", RARE_CONFIG, pool, test, files, start, rare)


def basicmotions_set(seed: int, pool_size: int, per_task: int) -> Dataset:
    """Pool tasks of ``per_task`` random BasicMotions TRAIN recordings each; test: the 4 TEST series."""
    from aeon.datasets import load_basic_motions

    x, y = load_basic_motions(split="train")
    rng = np.random.default_rng([seed, 11])
    files, pool, test = MemoryFiles(), [], []
    step = x.shape[2]
    for i in range(pool_size):
        chosen = rng.choice(len(y), per_task, replace=False)
        frame = pd.DataFrame(np.concatenate([x[j].T for j in chosen]), columns=list(CHANNELS))
        frame.insert(0, "time", np.arange(len(frame)))
        result = [
            {"id": f"p{i}_{n}", "from_name": "label", "to_name": "ts", "type": "timeserieslabels",
             "value": {"start": n * step, "end": n * step + step - 1, "instant": False,
                       "timeserieslabels": [LABELS[str(y[j])]]}}
            for n, j in enumerate(chosen) if str(y[j]) in LABELS
        ]
        name = f"bm{seed}_pool{i}.csv"
        files[name] = frame.to_csv(index=False).encode()
        pool.append(task(i + 1, name, result))
    for n, (frame, result) in enumerate(build_series("test", seed)):
        name = f"bm{seed}_test{n}.csv"
        files[name] = frame.to_csv(index=False).encode()
        test.append(task(pool_size + n + 1, name, result))
    return Dataset("basicmotions", LABEL_CONFIG, pool, test, files, int(rng.integers(pool_size)), set())


@dataclass
class Point:
    """One round: how many tasks were annotated and what the model trained on them scores."""

    annotated: int
    macro_f1: float
    event_f1: float
    rare_annotated: int
    train_seconds: float
    unchanged: int | None = None  # pool tasks predicted as by the previous round's model (score strategy)
    same_regions: int | None = None  # ... with the same regions, whatever their score
    compared: int | None = None  # pool tasks predicted by both


def regions(prediction: dict) -> list[tuple]:
    """A prediction's regions as Label Studio draws them: control, labels, start, end."""
    return sorted((r["from_name"], tuple(r["value"].get("timeserieslabels", [])), r["value"]["start"],
                   r["value"]["end"]) for r in prediction["result"])


def same_prediction(a: dict, b: dict) -> bool:
    """Whether two predictions of one task show the same in Label Studio: regions and score."""
    return regions(a) == regions(b) and abs(a["score"] - b["score"]) < SAME_SCORE


def train_and_score(ds: Dataset, annotated: list[int], settings: TrainingSettings) -> tuple[list, Point]:
    """Train on the annotated pool tasks and score the held-out test set."""
    started = time.perf_counter()
    models = train_project(ds.config, [ds.pool[i] for i in annotated], ds.files, settings)
    seconds = time.perf_counter() - started
    report = score(models, ds.test, ds.files)
    point = Point(len(annotated), report["timestep_macro_f1"], report["event_f1_iou50"],
                  len(ds.rare.intersection(annotated)), round(seconds, 1))
    return models, point


def simulate(ds: Dataset, strategy: str, first: tuple[list, Point], settings: TrainingSettings, k: int,
             budget: int, seed: int) -> list[Point]:
    """The loop for one strategy from the shared first model, up to ``budget`` annotated tasks."""
    rng = np.random.default_rng([seed, 3])
    annotated = [ds.start]
    remaining = [i for i in range(len(ds.pool)) if i != ds.start]
    models, point = first
    curve = [point]
    before: dict[int, dict] = {}  # the previous round's prediction of each pool task
    while len(annotated) < budget and remaining:
        if strategy in ("score", "softmax"):
            scoring = models if strategy == "score" else [replace(m, reference=None) for m in models]
            predictions = predict_tasks(scoring, [ds.pool[i] for i in remaining], ds.files)
            order = np.argsort([p["score"] for p in predictions], kind="stable")
            if strategy == "score":
                now = dict(zip(remaining, predictions, strict=True))
                if before:
                    point.unchanged = sum(same_prediction(before[i], now[i]) for i in now if i in before)
                    point.same_regions = sum(regions(before[i]) == regions(now[i]) for i in now if i in before)
                    point.compared = sum(i in before for i in now)
                before = now
        else:
            order = rng.permutation(len(remaining))
        picked = [remaining[j] for j in order[: min(k, budget - len(annotated))]]
        annotated += picked
        remaining = [i for i in remaining if i not in picked]
        models, point = train_and_score(ds, annotated, settings)
        curve.append(point)
        print(f"  {ds.name} seed {seed} {strategy:7s} {point.annotated:2d} tasks: macro-F1 {point.macro_f1:.3f} "
              f"event F1 {point.event_f1:.3f} rare tasks {point.rare_annotated} ({point.train_seconds:.0f} s)",
              flush=True)
    return curve


def tasks_needed(curve: list[dict], keep: bool = False) -> int | None:
    """Annotated tasks at the first round whose macro-F1 reaches the goal, None if none does.

    ``keep``: the first round from which every later round stays at the goal too
    (a model trained on a few tasks can fall back when a new task goes to validation).
    """
    f1 = [p["macro_f1"] for p in curve]
    return next((p["annotated"] for i, p in enumerate(curve) if min(f1[i:] if keep else f1[i:i + 1]) >= GOAL), None)


def summarise(results: dict) -> str:
    """The curves (mean [min, max] over seeds) and the tasks-needed table as text."""
    lines = []
    for name, runs in results["datasets"].items():
        budget = runs["budget"]
        lines.append(f"\n{name}: pool {runs['pool']}, k={runs['k']}, seeds {results['seeds']}")
        lines.append("tasks | " + " | ".join(f"{s} macro-F1 mean [min, max]  event F1 mean" for s in STRATEGIES))
        for n in sorted({p["annotated"] for s in STRATEGIES for c in runs[s] for p in c}):
            cells = []
            for s in STRATEGIES:
                at = [p for c in runs[s] for p in c if p["annotated"] == n]
                f1 = [p["macro_f1"] for p in at]
                ev = [p["event_f1"] for p in at]
                cells.append(f"{np.mean(f1):.3f} [{min(f1):.3f}, {max(f1):.3f}]  {np.mean(ev):.3f}")
            lines.append(f"{n:5d} | " + " | ".join(cells))
        for s in STRATEGIES:
            for keep, how in ((False, "first reaches"), (True, "reaches and stays")):
                needed = [tasks_needed(c, keep) for c in runs[s]]
                reached = [n for n in needed if n is not None]
                mean = f"{np.mean(reached):.1f}" if reached else "-"
                lines.append(f"tasks until macro-F1 {how} {GOAL} ({s}): per seed {needed} (None: not within "
                             f"{budget}), mean over the {len(reached)}/{len(needed)} seeds that did {mean}")
        rare = {s: [[p["rare_annotated"] for p in c] for c in runs[s]] for s in STRATEGIES}
        if any(any(r) for c in rare.values() for r in c):
            lines.append(f"rare-class tasks annotated per round: {rare}")
        same = [(p["unchanged"], p["same_regions"], p["compared"]) for c in runs["score"] for p in c
                if p.get("compared")]
        if same:
            kept, drawn, compared = (sum(x[k] for x in same) for k in range(3))
            lines.append(f"pool predictions unchanged from the previous round's model (score strategy): {kept} of "
                         f"{compared} ({kept / compared:.0%}), the same regions {drawn} ({drawn / compared:.0%}); "
                         f"per round (unchanged/same regions/compared) {[f'{u}/{r}/{n}' for u, r, n in same]}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """Macro-F1 and event F1 against annotated tasks, mean line and min-max band per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["datasets"])
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 3.6 * len(names)), squeeze=False)
    colours = {"score": "tab:blue", "softmax": "tab:green", "random": "tab:orange"}
    for row, name in enumerate(names):
        runs = results["datasets"][name]
        for col, (key, title) in enumerate((("macro_f1", "timestep macro-F1"), ("event_f1", "event F1@IoU0.5"))):
            ax = axes[row][col]
            for s in STRATEGIES:
                ns = sorted({p["annotated"] for c in runs[s] for p in c})
                values = [[p[key] for c in runs[s] for p in c if p["annotated"] == n] for n in ns]
                ax.plot(ns, [np.mean(v) for v in values], marker="o", color=colours[s],
                        label=NAMES[s])
                ax.fill_between(ns, [min(v) for v in values], [max(v) for v in values], color=colours[s], alpha=0.2)
            if key == "macro_f1":
                ax.axhline(GOAL, color="grey", linestyle=":", linewidth=1)
            ax.set_title(f"{name}: {title}")
            ax.set_xlabel("annotated tasks")
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"mean and min-max over seeds {results['seeds']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--datasets", nargs="+", default=["rare", "basicmotions"], choices=["rare", "basicmotions"])
    parser.add_argument("--k", type=int, default=None, help="tasks annotated per round (default: rare 2, BM 1)")
    parser.add_argument("--budget", type=int, default=None, help="annotated tasks at most (default: rare 15, BM 7)")
    parser.add_argument("--epochs", type=int, default=200, help="training epochs at most per round")
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="one seed, small pools, short trainings")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "active_learning")
    parser.add_argument("--replot", action="store_true", help="print and plot the results already in --out.json")
    args = parser.parse_args()
    if args.replot:
        results = json.loads(args.out.with_suffix(".json").read_text())
        print(summarise(results))
        plot(results, args.out.with_suffix(".png"))
        return
    if args.quick:
        args.seeds, args.epochs, args.patience = args.seeds[:1], 20, 3
    bootstrap(Settings.from_env())
    started = time.perf_counter()
    results: dict = {"seeds": args.seeds, "epochs": args.epochs, "patience": args.patience, "datasets": {}}
    for name in args.datasets:
        k = args.k or (2 if name == "rare" else 1)
        budget = args.budget or (15 if name == "rare" else 7)
        runs: dict = {"k": k, "budget": budget, **{s: [] for s in STRATEGIES}}
        for seed in args.seeds:
            if name == "rare":
                ds = rare_event_set(seed, pool_size=20 if args.quick else 40, rare_fraction=0.1,
                                    test_size=8, rows=480)
            else:
                ds = basicmotions_set(seed, pool_size=12 if args.quick else 20, per_task=4)
            runs["pool"] = len(ds.pool)
            settings = TrainingSettings(epochs=args.epochs, patience=args.patience, seed=seed)
            first = train_and_score(ds, [ds.start], settings)
            print(f"  {name} seed {seed} start: macro-F1 {first[1].macro_f1:.3f} event F1 {first[1].event_f1:.3f}",
                  flush=True)
            for s in STRATEGIES:
                runs[s].append([vars(p) for p in simulate(ds, s, first, settings, k, budget, seed)])
        results["datasets"][name] = runs
    results["seconds"] = round(time.perf_counter() - started)
    print(summarise(results))
    print(f"\n{results['seconds']} s in all")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
