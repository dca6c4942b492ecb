"""A project whose labels overlap, end to end: Run/Walk on two sensors and Alarm on a third,
each Alarm starting inside a Run or Walk and running past it.

Annotated through Label Studio's API as the UI saves overlapping regions, trained by the
backend, and the predictions Label Studio stores for a task nobody annotated hold
overlapping regions of different labels, each label found.
"""

from __future__ import annotations

from harness import synthetic
from harness.lsdriver import of_version, wait_for_training
from harness.waiting import backend_status
from integration.support import module_marks

pytestmark = module_marks()


def overlapping_pairs(result: list[dict]) -> int:
    """Pairs of ranges of different labels that share time."""
    spans = [r["value"] for r in result if not r["value"].get("instant")]
    return sum(
        1
        for i, a in enumerate(spans)
        for b in spans[i + 1 :]
        if a["timeserieslabels"] != b["timeserieslabels"] and a["start"] <= b["end"] and b["start"] <= a["end"]
    )


def test_overlapping_labels_are_learnt_and_predicted_through_label_studio(label_studio, backend):
    api, folder = label_studio.api, label_studio.tmp / "csv-layered"
    folder.mkdir(parents=True, exist_ok=True)
    recordings, paths = [], []
    for k in range(3):
        rec = synthetic.make_layered_recording(1200, seed=300 + k)
        path = folder / f"layered{k}.csv"
        path.write_bytes(synthetic.csv_bytes(rec))
        recordings.append(rec)
        paths.append(path)
    project = api.create_project("Sensors (overlapping labels)", synthetic.layered_config())["id"]
    tasks = api.import_csv_tasks(project, paths)
    api.connect_backend(project, backend.url, title="Time-series segmenter")

    for task, rec in zip(tasks[:2], recordings[:2]):
        annotation, _ = api.annotate(task, synthetic.annotation(rec))
        saved = annotation["result"]
        assert overlapping_pairs(saved) > 0, "the annotation itself must hold overlapping regions"
    status = wait_for_training(backend, project, backend_status(backend.url, project).get("requests", 0))
    assert status["state"] == "idle", status
    assert status["model_version"] != "untrained", status

    api.retrieve_predictions(project)
    latest = of_version({t: api.predictions(t) for t in tasks}, status["model_version"])
    held_out = latest[tasks[2]]
    labels = {name for r in held_out["result"] for name in r["value"]["timeserieslabels"]}
    assert synthetic.OVERLAP_LABEL in labels, labels
    assert labels & {"Run", "Walk"}, labels
    assert overlapping_pairs(held_out["result"]) > 0, held_out["result"]
    assert 0 <= held_out["score"] <= 1
