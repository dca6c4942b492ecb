import pytest

from segmenter.config import Settings
from segmenter.errors import ConfigError


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.model_dir == tmp_path / "models"
    assert s.cache_dir == tmp_path / "models" / ".cache"
    t = s.training
    assert (t.sequence_size, t.hidden_size, t.epochs) == (None, 64, 1000)
    assert (t.balanced_accuracy_threshold, t.min_class_f1_threshold, t.use_class_weights) == (0.85, 0.70, True)
    assert (s.port, s.training_backend, s.start_training_each_n_updates) == (9090, "thread", 1)
    assert s.label_studio_url == ""
    assert s.allowed_hosts == ()


def test_values_are_typed_and_aliases_work(tmp_path):
    env = {
        "MODEL_DIR": str(tmp_path),
        "LABEL_STUDIO_HOST": "http://ls:8080/",
        "SEQUENCE_SIZE": "20",
        "USE_CLASS_WEIGHTS": "false",
        "BALANCED_ACCURACY_THRESHOLD": "0.9",
        "ALLOWED_HOSTS": "Data.Example.org, files:8000",
        "LOG_LEVEL": "debug",
    }
    s = Settings.from_env(env)
    assert s.label_studio_url == "http://ls:8080"
    assert s.training.sequence_size == 20
    assert s.training.use_class_weights is False
    assert s.training.balanced_accuracy_threshold == 0.9
    assert s.allowed_hosts == ("data.example.org", "files:8000")
    assert s.log_level == "DEBUG"
    assert Settings.from_env({"LABEL_STUDIO_URL": "http://a", "LABEL_STUDIO_HOST": "http://b"}).label_studio_url == (
        "http://a"
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("SEQUENCE_SIZE", "fifty"),
        ("SEQUENCE_SIZE", "1"),
        ("TRAIN_EPOCHS", "0"),
        ("BALANCED_ACCURACY_THRESHOLD", "1.5"),
        ("USE_CLASS_WEIGHTS", "maybe"),
        ("TRAINING_BACKEND", "celery"),
        ("LABEL_STUDIO_URL", "localhost:8080"),
        ("LOG_LEVEL", "loud"),
        ("DEVICE", "tpu"),
        ("LOCAL_FILES_ROOT", "/no/such/dir"),
        ("BASIC_AUTH_USER", "only-user"),
        ("TORCH_THREADS", "0"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_describe_masks_secrets():
    s = Settings.from_env(
        {"LABEL_STUDIO_URL": "http://ls", "LABEL_STUDIO_API_KEY": "secret",
         "BASIC_AUTH_USER": "u", "BASIC_AUTH_PASS": "pw"}
    )
    text = str(s.describe())
    assert "secret" not in text
    assert "pw" not in text


@pytest.mark.slow
def test_wsgi_refuses_to_start_on_a_bad_value(tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-c", "import _wsgi"],
        env={"SEQUENCE_SIZE": "x", "MODEL_DIR": str(tmp_path), "PATH": ""},
        capture_output=True,
        text=True,
        cwd=str(__import__("pathlib").Path(__file__).parents[1]),
    )
    assert r.returncode != 0
    assert "SEQUENCE_SIZE" in r.stderr


def test_device_setting_resolves_and_refuses_a_missing_gpu(monkeypatch):
    import torch

    from segmenter import device

    assert Settings.from_env({}).device == "auto"
    assert Settings.from_env({"DEVICE": "CUDA"}).device == "cuda"
    assert device.resolve("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="DEVICE"):
        device.resolve("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resolve("auto") == torch.device("cuda")


def test_torch_threads_default_to_the_entry_points_choice_unless_set():
    import torch

    from segmenter.config import bootstrap

    before = torch.get_num_threads()
    try:
        assert Settings.from_env({}).torch_threads is None
        bootstrap(Settings.from_env({}), threads=2)
        assert torch.get_num_threads() == 2, "a command-line predict uses every core"
        bootstrap(Settings.from_env({"TORCH_THREADS": "1"}), threads=2)
        assert torch.get_num_threads() == 1, "TORCH_THREADS wins"
        bootstrap(Settings.from_env({}))
        assert torch.get_num_threads() == 1, "the service's default"
    finally:
        torch.set_num_threads(before)
