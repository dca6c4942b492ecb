import errno
import os
from pathlib import Path

import pytest
import torch

from segmenter import store
from segmenter.learning.network import SegmenterNet
from segmenter.learning.trained_model import TrainedModel
from segmenter.reading.labelconfig import Target

TARGET = Target("label", "ts", "csv_url", "url", ("Run",), ("a", "b"), None, None, ",")


def model(seed=0):
    import numpy as np

    torch.manual_seed(seed)
    return TrainedModel(TARGET, SegmenterNet(2, 2, 8), np.zeros(2, np.float32), np.ones(2, np.float32), 10, 8,
                        frozenset(), 3, {"trained_at": "now", "validation": {}, "data": {}})


def test_project_key_accepts_label_studio_forms():
    assert store.project_key("12.1795697041") == store.project_key(12) == store.project_key("12") == "12"
    assert store.project_key("012-01795697041") == "12-1795697041"  # another Label Studio's project 12
    assert store.label_studio_id("12-1795697041") == 12
    for bad in ("../etc", "-1", "1-", "1-x", "1.5e3"):
        with pytest.raises(ValueError):
            store.project_key(bad)


def test_created_at_reads_as_label_studio_writes_it_into_project_ids():
    assert store.created_epoch("2026-11-26T12:44:01.272560Z") == 1795697041
    assert store.created_epoch("2026-11-26T13:44:01.9+01:00") == 1795697041
    assert store.created_epoch("2026-11-26T12:44:01") == 1795697041  # naive: UTC
    for bad in (None, 5, "", "yesterday", "1969-12-31T23:59:59Z", "2026-11-26T12:44:01Z" * 10):
        assert store.created_epoch(bad) is None


def test_a_project_id_is_one_label_studio_project_another_is_kept_apart(tmp_path):
    assert store.resolve(tmp_path, "1.100") == "1"
    assert not (tmp_path / "model_project_1").exists()
    assert store.resolve(tmp_path, "1.100", claim=True) == "1"  # nothing to claim yet
    assert store.resolve(tmp_path, "1.100", create=True) == "1"
    assert store.resolve(tmp_path, 1, 100) == store.resolve(tmp_path, "1") == "1"
    assert store.resolve(tmp_path, "1.200", create=True) == store.resolve(tmp_path, 1, 200) == "1-200"
    assert store.resolve(tmp_path, "1-200") == "1-200"
    assert store.resolve(tmp_path, "1-100") == "1"
    store.save_connection(tmp_path, "1-200", {"hostname": "http://b"})
    assert store.projects(tmp_path) == ["1", "1-200"]
    assert store.mismatch(tmp_path, "1", "1970-01-01T00:01:40Z") is None
    assert "another Label Studio" in store.mismatch(tmp_path, "1", "1970-01-01T00:03:20Z")
    assert store.report(tmp_path, "1-200")["label_studio_project"] == {"id": 1, "created_at": "1970-01-01T00:03:20Z"}
    huge = "9" * 20  # beyond any calendar: still a key, shown as the number
    assert store.resolve(tmp_path, f"1.{huge}", create=True) == f"1-{huge}"
    assert store.report(tmp_path, f"1-{huge}")["label_studio_project"]["created_at"] == huge


def test_a_folder_without_an_owner_goes_to_the_first_claim_only(tmp_path):
    store.save_connection(tmp_path, 3, {"hostname": "http://a"})  # as an older backend left it
    assert store.resolve(tmp_path, "3.100") == "3"
    assert store.mismatch(tmp_path, "3", "1970-01-01T00:05:00Z") is None
    keys = set()

    def claim(created):
        keys.add((created, store.resolve(tmp_path, f"3.{created}", claim=True)))

    import threading

    threads = [threading.Thread(target=claim, args=(c,)) for c in (100, 200, 300, 400)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    owners = [c for c, k in keys if k == "3"]
    assert len(owners) == 1
    assert {k for c, k in keys if c not in owners} == {f"3-{c}" for c in (100, 200, 300, 400)
                                                       if c not in owners}


def test_versions_increase_old_ones_are_pruned(tmp_path):
    assert store.latest_version(tmp_path, 1) == store.INITIAL_VERSION
    made = [store.save(tmp_path, 1, [model()], keep=2) for _ in range(4)]
    assert [v.split("-")[0] for v in made] == ["v1", "v2", "v3", "v4"]
    assert store.versions(tmp_path, 1) == made[2:]
    folder = tmp_path / "model_project_1"
    expected = [f"{v}{ext}" for v in made[2:] for ext in (".pt", ".json")]
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    assert store.metadata(tmp_path, 1, made[-1])["targets"][0]["signature"] == TARGET.signature()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_a_failed_write_leaves_no_partial_version(tmp_path, monkeypatch, code):
    good = store.save(tmp_path, 1, [model()])
    real_write = Path.write_bytes

    def half_then_fail(path, data):
        real_write(path, data[: len(data) // 2])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Path, "write_bytes", half_then_fail)
    with pytest.raises(OSError) as failed:
        store.save(tmp_path, 1, [model()])
    if code == errno.ENOSPC:  # said in words, naming the directory, not as a torch stream error
        assert isinstance(failed.value, store.StorageError)
        assert "no space left on device" in str(failed.value)
        assert str(tmp_path) in str(failed.value)
    monkeypatch.undo()
    assert store.versions(tmp_path, 1) == [good]
    assert sorted(p.name for p in (tmp_path / "model_project_1").iterdir()) == [f"{good}.json", f"{good}.pt"]
    assert store.load(tmp_path, 1, good)[0].target == TARGET


def test_a_save_removes_what_interrupted_saves_left_but_not_live_writes(tmp_path):
    import subprocess
    import sys

    first = store.save(tmp_path, 1, [model()])
    folder = tmp_path / "model_project_1"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    origin = store.files.pid_scope()
    debris = [f".v2-20260101T000000Z.pt.{dead.stdout.strip()}@{origin}.abc123.tmp", "v2-20260101T000000Z.json"]
    live = f".status.json.{os.getpid()}@{origin}.def456.tmp"  # another thread of this process is writing it
    foreign = ".status.json.1@elsewhere.ghi789.tmp"  # another host's write: only removed when old
    for name in (*debris, live, foreign):
        (folder / name).write_text("x")
    second = store.save(tmp_path, 1, [model()])
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [live, foreign] + [f"{v}{ext}" for v in (first, second) for ext in (".pt", ".json")]
    )
    os.utime(folder / foreign, (0, 0))
    assert store.tidy(tmp_path, 1) == [foreign]


def test_metadata_is_derived_from_the_model_file_when_its_twin_is_missing(tmp_path):
    version = store.save(tmp_path, 1, [model()])
    (tmp_path / "model_project_1" / f"{version}.json").unlink()
    meta = store.metadata(tmp_path, 1, version)
    assert meta["version"] == version
    assert meta["targets"][0]["signature"] == TARGET.signature()


def test_files_load_with_weights_only(tmp_path):
    version = store.save(tmp_path, 3, [model()])
    payload = torch.load(tmp_path / "model_project_3" / f"{version}.pt", weights_only=True)
    assert payload["version"] == version
    assert payload["models"][0]["signature"] == TARGET.signature()


def test_cache_is_bounded_and_sees_new_versions(tmp_path):
    cache = store.VersionCache(tmp_path, capacity=2)
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
