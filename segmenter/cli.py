"""Offline command line for Label Studio JSON exports: train, predict, evaluate.

    python -m segmenter train    --label-config C.xml --export E.json --model-dir DIR
    python -m segmenter predict  --label-config C.xml --tasks T.json --model-dir DIR --out P.json
    python -m segmenter evaluate --label-config C.xml --export E.json [--test-export T.json | --test-fraction 0.3]
    python -m segmenter export   --project N [--version V] --out DIR   (segmenter.export.command)

Task data may be URLs or paths relative to ``--data-root`` (default: the
export's directory).  Training settings come from the same environment
variables as the service.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from segmenter import store
from segmenter.config import Settings, bootstrap
from segmenter.errors import SegmenterError
from segmenter.export import command as export_command
from segmenter.labelstudio.fetching import DataFetcher
from segmenter.learning.inference import fitting_models, predict_tasks
from segmenter.reading.annotations import choose_annotation
from segmenter.reading.project_config import ProjectConfig
from segmenter.terminal import EpochBars, PredictionBar

log = logging.getLogger("segmenter")


def _read_tasks(path: Path) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SegmenterError(f"{path}: not a readable JSON file: {exc}") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(t, dict) and "data" in t for t in data):
        raise SegmenterError(f"{path}: expected a Label Studio export (a list of tasks with 'data')")
    return data


def _fetcher(settings: Settings, data_root: Path) -> DataFetcher:
    client = None
    if settings.label_studio_url:  # label-studio-sdk only where a Label Studio is named: 0.6 s to import
        from segmenter.labelstudio.client import LabelStudioClient

        client = LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key)
    max_bytes = settings.max_download_mb * 1024 * 1024
    return DataFetcher(
        client, allowed_hosts=("*",), local_root=data_root, max_bytes=max_bytes, cache_dir=settings.cache_dir
    )


def _train(label_config: str, tasks: list[dict], fetcher: DataFetcher, settings: Settings) -> list:
    """``train_project`` with epoch bars on a terminal (one summary line per target elsewhere)."""
    from segmenter.learning.training import train_project  # imported here so that `predict` never pays for it
    bars = EpochBars()
    try:
        return train_project(label_config, tasks, fetcher, settings.training, bars)
    finally:
        bars.close()


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    tasks = _read_tasks(args.export)
    models = _train(args.label_config.read_text(), tasks, _fetcher(settings, args.data_root), settings)
    version = store.save(args.model_dir, args.project, models, keep=settings.keep_versions)
    print(json.dumps({"version": version, "models": [m.info for m in models]}, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    tasks = _read_tasks(args.tasks)
    version = store.latest_version(args.model_dir, args.project)
    if version == store.INITIAL_VERSION:
        raise SegmenterError(f"no trained model for project {args.project} in {args.model_dir}")
    # Only models trained for this config's very targets apply, and that training validated the
    # config with label-studio-sdk already: importing it again would be a third of the command.
    config = ProjectConfig.read(args.label_config.read_text(), settings.training, validate=False)
    models = fitting_models(store.load(args.model_dir, args.project, version), config)
    if not models:
        raise SegmenterError(f"version {version} was trained for another label config; train again")
    fetcher, bar = _fetcher(settings, args.data_root), PredictionBar(len(tasks))
    predictions = []
    try:
        for task in tasks:
            predictions.extend(predict_tasks(models, [task], fetcher, rows=bar.add_rows, settings=config.settings))
            bar.task_done()
    finally:
        bar.close()
    out = [{**t, "predictions": [{**p, "model_version": version}]} for t, p in zip(tasks, predictions)]
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {len(out)} tasks ({bar.rows:,} rows) with predictions of {version} to {args.out}", file=sys.stderr)
    return 0


def _split(tasks: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    annotated = [t for t in tasks if choose_annotation(t) is not None]
    order = np.random.default_rng(seed).permutation(len(annotated))
    n_test = max(1, round(fraction * len(annotated)))
    if n_test >= len(annotated):
        raise SegmenterError(f"{len(annotated)} annotated task(s): too few to hold out a test part")
    test = {int(i) for i in order[:n_test]}
    return [t for i, t in enumerate(annotated) if i not in test], [t for i, t in enumerate(annotated) if i in test]


def evaluate(
    label_config: str, train: list[dict], test: list[dict], fetcher: DataFetcher, settings: Settings
) -> dict:
    """Train on ``train``, then score the predictions of ``test`` against its annotations."""
    from segmenter.learning.evaluation import score  # scikit-learn: imported here so that `predict` never pays for it
    started = time.monotonic()
    models = _train(label_config, train, fetcher, settings)
    train_seconds = time.monotonic() - started
    scored = sum(choose_annotation(t) is not None for t in test) * len(models)
    bar = PredictionBar(scored, desc="evaluate: predict test tasks")
    try:
        report = score(
            models, test, fetcher, ProjectConfig.read(label_config, settings.training).settings,
            rows=bar.add_rows, predicted=bar.task_done,
        )
    finally:
        bar.close()
    report.update(
        n_train_tasks=len(train),
        train_seconds=round(train_seconds, 2),
        validation=[m.info["validation"] for m in models],
    )
    return report


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    tasks = _read_tasks(args.export)
    if args.test_export is not None:
        train, test = tasks, _read_tasks(args.test_export)
    else:
        train, test = _split(tasks, args.test_fraction, args.seed)
    fetcher = _fetcher(settings, args.data_root)
    settings = replace(settings, training=replace(settings.training, seed=args.seed))
    print(json.dumps(evaluate(args.label_config.read_text(), train, test, fetcher, settings), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m segmenter", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--label-config", type=Path, required=True, help="labeling config XML file")
        p.add_argument("--data-root", type=Path, help="where relative task paths point (default: export's folder)")
        p.add_argument("--project", default="0", help="project id the model is stored under (default 0)")

    train = sub.add_parser("train", help="train on an export and save the model")
    common(train)
    train.add_argument("--export", type=Path, required=True)
    train.add_argument("--model-dir", type=Path, required=True)
    predict = sub.add_parser("predict", help="write tasks with predictions, ready to import")
    common(predict)
    predict.add_argument("--tasks", type=Path, required=True)
    predict.add_argument("--model-dir", type=Path, required=True)
    predict.add_argument("--out", type=Path, required=True)
    evaluate_p = sub.add_parser("evaluate", help="train on part of an export, score on the rest")
    common(evaluate_p)
    evaluate_p.add_argument("--export", type=Path, required=True)
    held_out = evaluate_p.add_mutually_exclusive_group()
    held_out.add_argument("--test-export", type=Path)
    held_out.add_argument("--test-fraction", type=float, default=0.3)
    evaluate_p.add_argument("--seed", type=int, default=0)
    export_command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m segmenter``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        # A predict has the machine to itself: every core for the network.  Trainings keep one
        # thread, so that their results do not depend on the machine's core count.
        threads = (os.cpu_count() or 1) if args.command == "predict" else 1
        settings = bootstrap(Settings.from_env(), threads=threads)
        source = getattr(args, "export", None) or getattr(args, "tasks", None)
        if source is not None:
            args.data_root = (args.data_root or source.parent).resolve()
        handler = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate,
                   "export": export_command.run}[args.command]
        return handler(args, settings)
    except (SegmenterError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
