import pytest
import torch

from segmenter import store
from segmenter.inference import TrainedModel
from segmenter.labelconfig import Target
from segmenter.network import SegmenterNet

TARGET = Target("label", "ts", "csv_url", "url", ("Run",), ("a", "b"), None, None, ",")


def model(seed=0):
    import numpy as np

    torch.manual_seed(seed)
    return TrainedModel(TARGET, SegmenterNet(2, 2, 8), np.zeros(2, np.float32), np.ones(2, np.float32), 10, 8,
                        frozenset(), 3, {"trained_at": "now", "validation": {}, "data": {}})


def test_project_key_accepts_label_studio_forms():
    assert store.project_key("12.1795697041") == store.project_key(12) == store.project_key("12") == "12"
    with pytest.raises(ValueError):
        store.project_key("../etc")


def test_versions_increase_old_ones_are_pruned(tmp_path):
    assert store.latest_version(tmp_path, 1) == store.INITIAL_VERSION
    made = [store.save(tmp_path, 1, [model()], keep=2) for _ in range(4)]
    assert [v.split("-")[0] for v in made] == ["v1", "v2", "v3", "v4"]
    assert store.versions(tmp_path, 1) == made[2:]
    folder = tmp_path / "model_project_1"
    expected = [f"{v}{ext}" for v in made[2:] for ext in (".pt", ".json")]
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    assert store.metadata(tmp_path, 1, made[-1])["targets"][0]["signature"] == TARGET.signature()


def test_a_failed_write_leaves_no_partial_version(tmp_path, monkeypatch):
    good = store.save(tmp_path, 1, [model()])

    def broken_save(obj, path):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(store.torch, "save", broken_save)
    with pytest.raises(OSError):
        store.save(tmp_path, 1, [model()])
    assert store.versions(tmp_path, 1) == [good]
    assert not [p for p in (tmp_path / "model_project_1").iterdir() if p.suffix == ".tmp"]
    monkeypatch.undo()
    assert store.load(tmp_path, 1, good)[0].target == TARGET


def test_files_load_with_weights_only(tmp_path):
    version = store.save(tmp_path, 3, [model()])
    payload = torch.load(tmp_path / "model_project_3" / f"{version}.pt", weights_only=True)
    assert payload["version"] == version and payload["models"][0]["signature"] == TARGET.signature()


def test_cache_is_bounded_and_sees_new_versions(tmp_path):
    cache = store.ModelCache(tmp_path, capacity=2)
    assert cache.get(9) == (store.INITIAL_VERSION, [])
    for project in (1, 2, 3):
        store.save(tmp_path, project, [model(project)])
        cache.get(project)
    assert cache.cached_projects() == ["2", "3"]
    first, _ = cache.get(2)
    newer = store.save(tmp_path, 2, [model(7)])
    version, [loaded] = cache.get(2)
    assert version == newer != first
    assert torch.equal(loaded.net.head.weight, model(7).net.head.weight)
