"""Early stopping's patience on the suite: every candidate patience from one training per run.

    .venv/bin/python -m bench.patience [--patience 20 30 40 60 30/90] [--sets arrowhead ...]
                                       [--folds 3] [--seeds 0 1 2] [--jobs 2] [--json out.json]

A patience ``P`` stops after P epochs without a validation-loss improvement once the
thresholds are met, ``UNMET_PATIENCE_FACTOR`` times P while they are not; ``P/U`` allows U
epochs while they are not (``training.EarlyStop``). Each (set, fold, seed) of ``bench.suite``
trains once with the most patient rule, recording for every network each epoch's validation
loss, whether the thresholds were met, its checkpoint and its seconds. A less patient rule
trains the very same epochs up to its earlier stop: a network's data, seed and steps do not
depend on its patience nor on when another network stopped. So ``training.EarlyStop``
replayed on the recorded epochs gives each rule's stop and kept checkpoint exactly, those
checkpoints are scored on the test fold as ``bench.suite`` scores them, and the seconds up to
each stop are that rule's training time. (Exact while no network reaches
``TRAIN_TIME_BUDGET``: the suite's trainings take under 100 s.) Per rule and set it prints
the suite's mean / worst / spread and the targets met; ``--json`` also keeps every network's
validation losses.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from bench import suite
from segmenter.config import TrainingSettings
from segmenter.learning.training import UNMET_PATIENCE_FACTOR, EarlyStop


@dataclass
class Curve:
    """One network's recorded epochs."""

    losses: list[float] = field(default_factory=list)
    met: list[bool] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    states: list[dict] = field(default_factory=list)

    def stop(self, patience: str) -> tuple[int, int]:
        """(kept epoch, last epoch) had the network trained with ``patience`` ("P" or "P/U")."""
        rule = early_stop(patience)
        for epoch, (loss, met) in enumerate(zip(self.losses, self.met), 1):
            rule.record(epoch, loss, met)
            if rule.reason() is not None:
                return rule.best_epoch, epoch
        return rule.best_epoch, len(self.losses)


def early_stop(patience: str) -> EarlyStop:
    """The stopping rule a "P" or "P/U" patience names."""
    met, _, unmet = patience.partition("/")
    return EarlyStop(int(met), int(unmet) if unmet else None)


def recording_patience(patiences: list[str]) -> int:
    """The one patience whose training runs at least as long as each rule's would."""
    rules = [early_stop(p) for p in patiences]
    return max(max(r.patience, -(-r.unmet_patience // UNMET_PATIENCE_FACTOR)) for r in rules)


def recorded_training(data: suite.Fold, settings: TrainingSettings) -> tuple[object, list[Curve]]:
    """``train_project`` on ``data`` with every network's epochs recorded (``fit`` wrapped: the only
    place a network and its validation meet, so the product needs no hook for this bench)."""
    from segmenter.learning import training

    curves: list[Curve] = []
    fit = training.fit

    def recording(model, source, val, settings, rng, weights, progress=None, budget=None):
        curve, last = Curve(), [time.perf_counter()]
        curves.append(curve)

        def epoch_done(report) -> None:
            curve.losses.append(report.validation.loss)
            curve.met.append(training.thresholds_met(report.validation, settings))
            curve.states.append(copy.deepcopy(model.net.state_dict()))
            now = time.perf_counter()
            curve.seconds.append(now - last[0])
            last[0] = now

        return fit(model, source, val, settings, rng, weights, epoch_done, budget)

    with mock.patch.object(training, "fit", recording):
        [model] = training.train_project(data.config, data.train, data.files, settings)
    return model, curves


def run_one(key: str, fold: int, k: int, seed: int, patiences: list[str]) -> dict:
    """Train fold ``fold`` of set ``key`` once with the most patient rule; score every rule's checkpoints."""
    import torch

    from segmenter.learning.evaluation import score

    torch.set_num_threads(1)
    data = suite.folds_of(key, k)[fold]
    model, curves = recorded_training(data, TrainingSettings(seed=seed, patience=recording_patience(patiences)))
    nets = list(getattr(model.net, "members", [model.net]))
    scored: dict[tuple[int, ...], dict] = {}
    out = {"set": key, "fold": fold, "seed": seed, "patience": {},
           "losses": [[round(x, 5) for x in c.losses] for c in curves], "met": [c.met for c in curves]}
    for p in patiences:
        stops = [c.stop(p) for c in curves]
        kept = tuple(best for best, _ in stops)
        if kept not in scored:
            for net, curve, best in zip(nets, curves, kept):
                net.load_state_dict(curve.states[best - 1])
            scored[kept] = score([model], data.test, data.files)
        report = scored[kept]
        out["patience"][p] = {
            "macro_f1": report["timestep_macro_f1"], "event_f1": report["event_f1_iou50"],
            "per_label_event_f1": report.get("per_label_event_f1_iou50"),
            "train_seconds": round(sum(sum(c.seconds[:last]) for c, (_, last) in zip(curves, stops)), 2),
            "epochs": [last for _, last in stops], "kept": list(kept),
        }
    return out


def summary(runs: list[dict], patience: str, key: str) -> dict:
    """The suite's scores of one set at one patience, with its mean training seconds."""
    mine = [r["patience"][patience] for r in runs if r["set"] == key]
    return {**suite.scores(mine), "train_s_mean": sum(r["train_seconds"] for r in mine) / len(mine)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patience", nargs="+", type=_rule, default=["20", "30", "40", "60"],
                        help='"P" or "P/U"')
    parser.add_argument("--sets", nargs="+", choices=[*suite.SOURCES, *suite.SYNTHETIC])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once (one torch thread each)")
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args()
    keys = args.sets or [*suite.SOURCES, *suite.SYNTHETIC]
    patiences = list(dict.fromkeys(args.patience))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    jobs = [(key, f, args.folds, seed, patiences) for key in keys for f in range(args.folds) for seed in args.seeds]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(_star, jobs))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    print("| patience | set | macro-F1 mean / worst / spread | event F1 mean / worst / spread "
          "| train s mean | targets |")
    print("|---|---|---|---|---|---|")
    for p in patiences:
        for key in keys:
            s = summary(runs, p, key)
            misses = suite.met(key, s)
            print(f"| {p} | {key} | {s['macro_mean']:.3f} / {s['macro_worst']:.3f} / {s['macro_spread']:.3f} "
                  f"| {s['event_mean']:.3f} / {s['event_worst']:.3f} / {s['event_spread']:.3f} "
                  f"| {s['train_s_mean']:.1f} | {'all met' if not misses else '; '.join(misses)} |")
        total = sum(r["patience"][p]["train_seconds"] for r in runs)
        print(f"| {p} | all | | | {total / 60:.1f} min summed | |")


def _rule(text: str) -> str:
    try:
        early_stop(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r}: a patience is "P" or "P/U"') from None
    return text


def _star(job: tuple) -> dict:
    return run_one(*job)


if __name__ == "__main__":
    main()
