"""Write a stored version as an export: one ONNX network per target, ``manifest.json``, the runner.

The manifest says everything ``/predict`` uses besides the network: channels in
order, normalisation, window and stride, labels (layered or not) and instants,
the clean-up settings in force (from the label config the project was last set
up with, else the automatic ones), the time column's form, the version and what
it was trained on.  Each ONNX graph takes a batch of normalised windows
``(batch, window, channels)`` and gives per-row probabilities (the softmax, or
for a layered model each label's sigmoid), so the runner adds nothing to it.
A target has two graphs of one network, as the backend cuts two windows
(``trained_model.prediction_window``): the training window for a series shorter
than two of them, twice it (``long``) otherwise.
``runner.py`` and the numerics it shares with the backend (``postprocess.py``,
``novelty.py``) are copied beside the manifest: the folder is all a user needs.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import shutil
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

import torch

from segmenter import postprocess, store
from segmenter.config import Settings
from segmenter.errors import SegmenterError
from segmenter.learning import novelty
from segmenter.learning.inference import fitting_models
from segmenter.learning.network import probabilities
from segmenter.learning.trained_model import TrainedModel, long_window
from segmenter.reading.project_config import ProjectConfig
from segmenter.reading.project_settings import ProjectSettings

FORMAT = "segmenter-export/1"
MANIFEST = "manifest.json"
ONNX_OPSET = 17
INPUT, OUTPUT = "windows", "probabilities"
# Copied beside the manifest: the runner and the pure-numpy modules it imports (no torch, no pandas).
RUNNER_FILES = {
    "runner.py": Path(__file__).with_name("runner.py"),
    "postprocess.py": Path(postprocess.__file__),
    "novelty.py": Path(novelty.__file__),
}


class ExportError(SegmenterError):
    """A version cannot be exported; ``status`` is the HTTP answer that says why."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Probabilities(torch.nn.Module):
    """The network with its activation: windows in, per-row probabilities out."""

    def __init__(self, net: torch.nn.Module, sigmoid: bool) -> None:
        super().__init__()
        self.net, self.sigmoid = net, sigmoid

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return probabilities(self.net(windows), self.sigmoid)


def onnx_bytes(model: TrainedModel, window: int) -> bytes:
    """The model's network as an ONNX graph for windows of ``window`` rows, with a free batch dimension.

    TorchScript-based exporter (``dynamo=False``): the LSTM exports with it and it
    needs no ``onnxscript``; its deprecation and tracing warnings say nothing about
    this network, whose shapes are fixed by the window.
    """
    net = _Probabilities(model.net, model.multi_label).cpu().eval()
    example = torch.zeros(1, window, len(model.target.channels))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (example,), buffer, input_names=[INPUT], output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=ONNX_OPSET, dynamo=False,
        )
    return buffer.getvalue()


def _duration(d: postprocess.Duration | None) -> dict | None:
    return None if d is None else {"amount": d.amount, "in_rows": d.in_rows}


def _time_kind(model: TrainedModel) -> str:
    """How the series' time axis reads (``segmenter.reading.series``): row index, numbers or datetimes."""
    if model.target.time_column is None:
        return "index"
    return "datetime" if model.target.time_format else "numeric"


def target_manifest(model: TrainedModel, settings: ProjectSettings | None, onnx_file: str, long_file: str) -> dict:
    """What the runner needs besides the network to reproduce ``/predict`` for one target: ``window``
    and ``onnx`` for a series shorter than two windows, ``long`` for the others."""
    long = long_window(model.sequence_size)
    t = model.target
    rules = settings.rules(t.labels) if settings is not None else [(None, None)] * len(t.classes)
    return {
        "from_name": t.from_name,
        "to_name": t.to_name,
        "data_key": t.data_key,
        "value_type": t.value_type,
        "signature": t.signature(),
        "onnx": onnx_file,
        "input": INPUT,
        "output": OUTPUT,
        "channels": list(t.channels),
        "normalise": {"mean": model.mean.astype(float).tolist(), "std": model.std.astype(float).tolist()},
        "window": model.sequence_size,
        "stride": max(1, math.ceil(model.sequence_size / 2)),
        "long": {"onnx": long_file, "window": long, "stride": max(1, math.ceil(long / 2))},
        "layered": model.multi_label,
        "labels": list(t.labels),
        "outputs": list(t.labels) if model.multi_label else list(t.classes),
        "instant_labels": [t.classes[c] for c in sorted(model.instant_classes)],
        "time": {"kind": _time_kind(model), "column": t.time_column, "format": t.time_format, "sep": t.sep},
        "cleanup": {
            "auto_min_rows": model.min_segment_rows,
            "score_threshold": settings.score_threshold if settings is not None else 0.0,
            "rules": [
                {"class": name, "min_duration": _duration(low), "merge_gap": _duration(gap)}
                for name, (low, gap) in zip(t.classes, rules)
            ],
            "from_label_config": settings is not None,
        },
        "novelty": None if model.reference is None else model.reference.to_state(),
        "trained_with": model.trained_with(),
        "trained_on": model.info,
    }


def _models(settings: Settings, project: str, version: str | None, label_config: str | None
            ) -> tuple[str, list[TrainedModel], dict[str, ProjectSettings] | None]:
    """The version to export (the served one when None), its models that apply, their settings."""
    if version is None:
        version = store.latest_version(settings.model_dir, project)
        if version == store.INITIAL_VERSION:
            raise ExportError(f"project {project} has no trained version to export", 409)
    elif version not in store.versions(settings.model_dir, project):
        raise ExportError(f"project {project} has no version {version!r} (see /versions)", 404)
    try:
        models = store.load(settings.model_dir, project, version)
    except Exception as exc:  # truncated, garbage, not our format: the loading path sets it aside
        raise ExportError(f"version {version} of project {project} does not load ({type(exc).__name__}): "
                          "it cannot be exported", 422) from None
    if label_config is None:
        return version, models, None
    config = ProjectConfig.read(label_config, settings.training)
    fitting = fitting_models(models, config)
    if not fitting:
        raise ExportError(f"version {version} of project {project} was trained for another label config than "
                          "the one in force: /predict does not serve it, so it is not exported", 409)
    return version, fitting, config.settings


def export(settings: Settings, project: str, out: Path, version: str | None = None,
           label_config: str | None = None) -> dict:
    """Write the export of ``version`` of ``project`` into the folder ``out``; returns the manifest.

    ``label_config`` gives the clean-up settings in force; without, the config of
    the project's last ``/setup``, and without that the automatic clean-up.
    Raises ``ExportError`` naming the project and version when it cannot be exported.
    """
    if importlib.util.find_spec("onnx") is None:  # torch's exporter writes the graph with it
        raise ExportError(f"cannot export version {version or 'served'} of project {project}: exporting needs "
                          "the onnx package (requirements.txt pins it), which is not installed here", 503)
    if label_config is None:
        label_config = store.load_connection(settings.model_dir, project).get("label_config") or None
    version, models, project_settings = _models(settings, project, version, label_config)
    per_series = [m.target.from_name for m in models if m.series_norm]
    if per_series:
        raise ExportError(f"version {version} of project {project} scales each series by its own statistics "
                          f"(TRAIN_SERIES_NORM, {', '.join(per_series)}): the runner reads a series in chunks and "
                          "cannot, so it is not exported", 422)
    meta = store.metadata(settings.model_dir, project, version)
    out.mkdir(parents=True, exist_ok=True)
    targets = []
    for i, model in enumerate(models):
        name, long_name = f"target{i}.onnx", f"target{i}-long.onnx"
        (out / name).write_bytes(onnx_bytes(model, model.sequence_size))
        (out / long_name).write_bytes(onnx_bytes(model, long_window(model.sequence_size)))
        own = project_settings.get(model.target.from_name) if project_settings is not None else None
        targets.append(target_manifest(model, own, name, long_name))
    manifest = {
        "format": FORMAT,
        "project": project,
        "version": version,
        "created_at": meta.get("created_at"),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "targets": targets,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    for name, source in RUNNER_FILES.items():
        shutil.copyfile(source, out / name)
    return manifest


def archive(settings: Settings, project: str, version: str | None = None, label_config: str | None = None
            ) -> tuple[str, bytes]:
    """The export as one ``.tar.gz`` (name, bytes), its files in a folder named after the project and version."""
    with tempfile.TemporaryDirectory(prefix="segmenter-export-") as staging:
        folder = Path(staging)
        manifest = export(settings, project, folder, version, label_config)
        top = f"segmenter-project{project}-{manifest['version']}"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(folder.iterdir()):
                tar.add(path, arcname=f"{top}/{path.name}")
    return f"{top}.tar.gz", buffer.getvalue()

