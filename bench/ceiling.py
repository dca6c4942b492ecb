"""What the suite's real data sets allow: their recordings classified whole, boundaries given.

    .venv/bin/python -m bench.ceiling [--sets arrowhead italypower ...] [--folds 3] [--seeds 0 1 2]

The segmenter must find where each recording starts and which class it is.  This bench
is told where: every test recording of ``bench.suite``'s folds (the same draw, folds
and series order) is classified whole by MiniRocket (``aeon``'s ``MiniRocketClassifier``,
a whole-series classifier among the most accurate on the UCR/UEA archive), trained on
the fold's training recordings.  Its classes are laid on the rows of the suite's test
series (which begin part-way into their first recording, as in the suite) and scored
as the suite scores the segmenter (row macro-F1 with background, event F1@IoU0.5
where adjacent recordings of one class make one event), so a segmenter
score above this line would need a better classifier than MiniRocket; a target above
it is beyond what the recordings tell apart.  Recordings of unequal length
(JapaneseVowels) are padded with their last value to the longest.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench.suite import SOURCES, TARGETS, draw, leads
from segmenter.learning.evaluation import event_f1, match_events, timestep_scores


def padded(recordings: list[np.ndarray], length: int) -> np.ndarray:
    """(n, channels, length): each recording extended with its last value."""
    return np.stack([np.pad(r, ((0, 0), (0, length - r.shape[1])), mode="edge") for r in recordings])


def fold_scores(key: str, k: int, seed: int) -> list[dict]:
    """Row macro-F1 and event F1 of whole-recording MiniRocket classes on each of the ``k`` folds."""
    from aeon.classification.convolution_based import MiniRocketClassifier

    d = draw(key, k)
    classes = d.classes
    index = {c: n for n, c in enumerate(classes)}
    longest = max(r.shape[1] for r in d.x)
    out = []
    for f, parts in enumerate(d.series):
        train = np.concatenate(parts["train"])
        model = MiniRocketClassifier(random_state=seed, n_jobs=1)
        model.fit(padded([d.x[i] for i in train], longest), d.y[train])
        truth_rows, pred_rows, matched, n_true, n_pred = [], [], 0, 0, 0
        for group, lead in zip(parts["test"], leads(d, f), strict=True):
            guess = model.predict(padded([d.x[i] for i in group], longest))
            lengths = [d.x[i].shape[1] for i in group]
            truth = np.repeat([index[d.y[i]] for i in group], lengths)[lead:]
            pred = np.repeat([index[g] for g in guess], lengths)[lead:]
            m, t, p = match_events(truth, pred, frozenset(), 1)
            matched, n_true, n_pred = matched + m, n_true + t, n_pred + p
            truth_rows.append(truth)
            pred_rows.append(pred)
        rows = timestep_scores(np.concatenate(truth_rows), np.concatenate(pred_rows), classes)
        out.append({"set": key, "fold": f, "seed": seed, "macro_f1": rows["timestep_macro_f1"],
                    "event_f1": event_f1(matched, n_true, n_pred)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=list(SOURCES), default=list(SOURCES))
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    started = time.monotonic()
    print("| set | runs | macro-F1 mean / worst / spread | event F1 mean / worst / spread |")
    print("|---|---|---|---|")
    for key in args.sets:
        runs = [r for seed in args.seeds for r in fold_scores(key, args.folds, seed)]
        cells = []
        for name in ("macro_f1", "event_f1"):
            v = [r[name] for r in runs]
            cells.append(f"{statistics.mean(v):.3f} / {min(v):.3f} / {max(v) - min(v):.3f}")
        print(f"| {key} | {len(runs)} | {cells[0]} | {cells[1]} |", flush=True)
    print(f"MiniRocket on whole recordings, boundaries given; targets: mean macro-F1 >= {TARGETS['macro_mean']}, "
          f"worst event F1 >= {TARGETS['event_worst']}; {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
