"""A MODEL_DIR whose projects serve a version with many labels, without training on that many.

A small real model is trained once (so the version loads and is served) and
the records its charts are drawn from (per-label F1, class balance, confusion
matrix, per-epoch curve) are rewritten for ``labels`` classes: what the
dashboard draws for a big project, in seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np


def confusion(labels: int) -> tuple[list[str], list[list[int]]]:
    """Classes (background first) and a plausible confusion matrix (rows: annotated) of ``labels`` classes."""
    rng = np.random.default_rng(labels)
    rows = rng.integers(0, 1000, (labels, labels)) + np.diag(rng.integers(5000, 20000, labels))
    return ["__background__"] + [f"label {i}" for i in range(labels - 1)], rows.tolist()


def model_dir_with_labels(model_dir: Path, projects: int, labels: int) -> list[str]:
    """Projects ``1..projects`` under ``model_dir``, each serving one version with ``labels``-label records;
    their ids."""
    from harness import synthetic
    from segmenter import store
    from segmenter.config import TrainingSettings
    from segmenter.learning.training import train_project

    tasks, files = synthetic.annotated_tasks(2, 300)
    [model] = train_project(synthetic.label_config(), tasks, files, TrainingSettings(epochs=1, patience=1))
    version = store.save(model_dir, "1", [model])
    twin = store.project_dir(model_dir, "1") / f"{version}.json"
    meta = json.loads(twin.read_text())
    classes, rows = confusion(labels)
    names = classes[1:]
    info = meta["targets"][0]["info"]
    info["validation"]["per_class_f1"] = {n: round(0.5 + i / (3 * labels), 3) for i, n in enumerate(names)}
    info["validation"]["confusion"] = {"classes": classes, "rows": rows}
    info["data"]["class_rows"] = {n: 1000 + 10 * i for i, n in enumerate(names)}
    info["curve"] = [[e, 1 / e, 1.2 / e, 0.5 + e / 100, 0.4 + e / 100] for e in range(1, 31)]
    twin.write_text(json.dumps(meta))
    for p in range(2, projects + 1):
        shutil.copytree(store.project_dir(model_dir, "1"), store.project_dir(model_dir, str(p)))
    return [str(p) for p in range(1, projects + 1)]
