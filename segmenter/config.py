"""Every environment variable the backend reads, in one place, typed, with defaults.

``Settings.from_env()`` is read once per process by its entry point (the web
app in ``_wsgi``, gunicorn's settings, the command line, the RQ worker's job),
which then calls ``bootstrap``; a bad value raises ``ConfigError`` naming the
variable, which stops start-up with that message.  The README lists the same
variables.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from segmenter.errors import ConfigError
from segmenter.redaction import has_credentials, install, remember, without_credentials

TRAINING_BACKENDS = ("thread", "rq")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEVICES = ("auto", "cpu", "cuda")
PREDICT_MODES = ("unlabelled", "all", "off")
MAX_PREDICT_BATCH = 1000
MAX_PREDICT_RETRIES = 10
MAX_MEMBERS = 9  # networks one training may average (each costs its training and prediction time)


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = _text(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _optional_int(env: Mapping[str, str], name: str, minimum: int) -> int | None:
    """An integer the operator set, or None when the variable is unset or empty."""
    if _text(env, name, "") == "":
        return None
    return _int(env, name, minimum, minimum)


def _members(env: Mapping[str, str]) -> int | None:
    value = _optional_int(env, "TRAIN_MEMBERS", 1)
    if value is not None and value > MAX_MEMBERS:
        raise ConfigError(f"TRAIN_MEMBERS={value} must be at most {MAX_MEMBERS}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = _text(env, name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} must lie between {low} and {high}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _text(env, name, "true" if default else "false").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _text(env, name, default)
    value = raw.upper() if name == "LOG_LEVEL" else raw.lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return value


def _url(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        raw = _text(env, name, "")
        if raw:
            if has_credentials(raw):
                # Never echo the value: it holds a password.
                raise ConfigError(
                    f"{name} must not contain a user name or password ({without_credentials(raw)!r} "
                    "without them): the backend authenticates with LABEL_STUDIO_API_KEY"
                )
            if not raw.startswith(("http://", "https://")):
                raise ConfigError(f"{name}={raw!r} must start with http:// or https://")
            return raw.rstrip("/")
    return ""


def _hosts(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = _text(env, name, "")
    return tuple(h.strip().lower() for h in raw.split(",") if h.strip())


@dataclass(frozen=True)
class TrainingSettings:
    """What shapes a training run; saved beside each model for reproducibility."""

    sequence_size: int | None = None  # None: chosen at each training from the annotations
    hidden_size: int = 64
    epochs: int = 1000
    # epochs without validation-loss improvement once the thresholds are met (bench.patience, three networks:
    # 30 rather than 60 keeps every set that met its targets, in a third less training; ArrowHead's mean
    # macro-F1 loses 0.03)
    patience: int = 30
    batch_size: int | None = None  # windows per training step; None: ``training.batch_size_for`` (32, long windows 16)
    learning_rate: float = 3e-3
    balanced_accuracy_threshold: float = 0.85
    min_class_f1_threshold: float = 0.70
    use_class_weights: bool = True
    seed: int = 0
    # seconds one target's training may take before it keeps its best checkpoint: 100 tasks x 10,000 rows
    # reach the same validation at 280 s as at 600 s (bench.training), and train within 5 minutes
    time_budget: float = 280.0
    # training windows' channels scaled by 1 +- this, plus noise of a tenth of it (bench.suite: GunPoint
    # event F1 0.95 -> 0.99, JapaneseVowels 0.89 -> 0.90 at 0.2); 0: none
    augment: float = 0.2
    # networks trained and averaged when a project has several tasks, each holding out its own random
    # tasks, so the seed and the hold-out decide much less (bench.suite, 3 rather than 1: JapaneseVowels
    # worst event F1 0.83 -> 0.84, ItalyPowerDemand's spread 0.11 -> 0.09) at three times the training
    # and network time; None: three up to ``training.ENSEMBLE_MAX_ROWS`` annotated rows, else one
    # (one-task projects always average three)
    members: int | None = None
    # each task's series standardised by its own per-channel mean and std, in training and prediction, so a
    # recording with another offset or gain looks like the annotated ones; False: one mean/std per channel
    # over all training series
    series_norm: bool = False


@dataclass(frozen=True)
class Settings:
    """The backend's whole configuration."""

    model_dir: Path = Path("models")
    cache_dir: Path = Path("models/.cache")
    metrics_dir: Path = Path("models/.metrics")
    label_studio_url: str = ""
    label_studio_api_key: str = ""
    label_studio_timeout: float = 30.0
    allowed_hosts: tuple[str, ...] = ()
    local_files_root: Path | None = None
    max_download_mb: int = 200
    max_request_mb: int = 100
    max_buffered_mb: int = 200  # unset: twice MAX_REQUEST_MB
    start_training_each_n_updates: int = 1
    training_backend: str = "thread"
    max_concurrent_trainings: int = 1
    max_concurrent_writebacks: int = 2
    redis_url: str = "redis://localhost:6379/0"
    rq_queue: str = "segmenter"
    keep_versions: int = 3
    model_cache_size: int = 8
    basic_auth_user: str = ""
    basic_auth_pass: str = ""
    port: int = 9090
    workers: int = 1
    threads: int = 8
    torch_threads: int | None = None  # None: the entry point's default (bootstrap)
    device: str = "auto"
    predict_after_training: str = "unlabelled"
    predict_batch_size: int = 100
    predict_batch_pause: float = 0.5
    predict_retries: int = 4
    predict_retry_wait: float = 1.0
    log_level: str = "INFO"
    training: TrainingSettings = field(default_factory=TrainingSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: the process environment)."""
        env = os.environ if env is None else env
        model_dir = Path(_text(env, "MODEL_DIR", "models")).expanduser().resolve()
        cache_dir = Path(_text(env, "CACHE_DIR", str(model_dir / ".cache"))).expanduser().resolve()
        metrics_dir = Path(_text(env, "METRICS_DIR", str(model_dir / ".metrics"))).expanduser().resolve()
        root = _text(env, "LOCAL_FILES_ROOT", "")
        local_root = Path(root).expanduser().resolve() if root else None
        if local_root is not None and not local_root.is_dir():
            raise ConfigError(f"LOCAL_FILES_ROOT={root!r} is not a directory")
        user = _text(env, "BASIC_AUTH_USER", "")
        password = _text(env, "BASIC_AUTH_PASS", "")
        if bool(user) != bool(password):
            raise ConfigError("BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together")
        training = TrainingSettings(
            sequence_size=_optional_int(env, "SEQUENCE_SIZE", 2),
            hidden_size=_int(env, "HIDDEN_SIZE", 64, 2),
            epochs=_int(env, "TRAIN_EPOCHS", 1000, 1),
            patience=_int(env, "EARLY_STOPPING_PATIENCE", 30, 1),
            batch_size=_optional_int(env, "BATCH_SIZE", 1),
            learning_rate=_float(env, "LEARNING_RATE", 3e-3, 1e-6, 1.0),
            balanced_accuracy_threshold=_float(env, "BALANCED_ACCURACY_THRESHOLD", 0.85, 0.0, 1.0),
            min_class_f1_threshold=_float(env, "MIN_CLASS_F1_THRESHOLD", 0.70, 0.0, 1.0),
            use_class_weights=_bool(env, "USE_CLASS_WEIGHTS", True),
            seed=_int(env, "SEED", 0, 0),
            time_budget=_float(env, "TRAIN_TIME_BUDGET", 280.0, 1.0, 86400.0),
            members=_members(env),
            series_norm=_bool(env, "TRAIN_SERIES_NORM", False),
        )
        label_studio_url = _url(env, "LABEL_STUDIO_URL", "LABEL_STUDIO_HOST")
        api_key = _text(env, "LABEL_STUDIO_API_KEY", "")
        if api_key and not label_studio_url:
            # The key is only ever sent to the Label Studio it belongs to; without the
            # URL, the only address at hand would come from an unauthenticated request.
            raise ConfigError(
                "LABEL_STUDIO_API_KEY is set but LABEL_STUDIO_URL is not: set LABEL_STUDIO_URL to the "
                "Label Studio the key belongs to (the key is never sent anywhere else)"
            )
        max_request_mb = _int(env, "MAX_REQUEST_MB", 100, 1)
        # Bodies a worker holds at once; room for two of the largest by default.
        max_buffered_mb = _int(env, "MAX_BUFFERED_MB", 2 * max_request_mb, 1)
        if max_buffered_mb < max_request_mb:
            raise ConfigError(f"MAX_BUFFERED_MB={max_buffered_mb} must be at least MAX_REQUEST_MB={max_request_mb}, "
                              "or no body of the largest size could ever be read")
        batch = _int(env, "PREDICT_BATCH_SIZE", 100, 1)
        if batch > MAX_PREDICT_BATCH:
            raise ConfigError(f"PREDICT_BATCH_SIZE={batch} must be at most {MAX_PREDICT_BATCH}")
        retries = _int(env, "PREDICT_RETRIES", 4, 0)
        if retries > MAX_PREDICT_RETRIES:
            raise ConfigError(f"PREDICT_RETRIES={retries} must be at most {MAX_PREDICT_RETRIES}")
        return cls(
            model_dir=model_dir,
            cache_dir=cache_dir,
            metrics_dir=metrics_dir,
            label_studio_url=label_studio_url,
            label_studio_api_key=api_key,
            label_studio_timeout=_float(env, "LABEL_STUDIO_TIMEOUT", 30.0, 0.1, 3600.0),
            allowed_hosts=_hosts(env, "ALLOWED_HOSTS"),
            local_files_root=local_root,
            max_download_mb=_int(env, "MAX_DOWNLOAD_MB", 200, 1),
            max_request_mb=max_request_mb,
            max_buffered_mb=max_buffered_mb,
            start_training_each_n_updates=_int(env, "START_TRAINING_EACH_N_UPDATES", 1, 1),
            training_backend=_choice(env, "TRAINING_BACKEND", "thread", TRAINING_BACKENDS),
            max_concurrent_trainings=_int(env, "MAX_CONCURRENT_TRAININGS", 1, 1),
            max_concurrent_writebacks=_int(env, "MAX_CONCURRENT_WRITEBACKS", 2, 1),
            redis_url=_text(env, "REDIS_URL", "redis://localhost:6379/0"),
            rq_queue=_text(env, "RQ_QUEUE", "segmenter"),
            keep_versions=_int(env, "KEEP_VERSIONS", 3, 1),
            model_cache_size=_int(env, "MODEL_CACHE_SIZE", 8, 1),
            basic_auth_user=user,
            basic_auth_pass=password,
            port=_int(env, "PORT", 9090, 1),
            workers=_int(env, "WORKERS", 1, 1),
            threads=_int(env, "THREADS", 8, 1),
            torch_threads=_optional_int(env, "TORCH_THREADS", 1),
            device=_choice(env, "DEVICE", "auto", DEVICES),
            predict_after_training=_choice(env, "PREDICT_AFTER_TRAINING", "unlabelled", PREDICT_MODES),
            predict_batch_size=batch,
            predict_batch_pause=_float(env, "PREDICT_BATCH_PAUSE", 0.5, 0.0, 600.0),
            predict_retries=retries,
            predict_retry_wait=_float(env, "PREDICT_RETRY_WAIT", 1.0, 0.0, 30.0),
            log_level=_choice(env, "LOG_LEVEL", "INFO", LOG_LEVELS),
            training=training,
        )

    def describe(self) -> dict[str, object]:
        """The settings as plain values, secrets masked, for the start-up log."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("label_studio_api_key", "basic_auth_pass") and value:
                value = "***"
            out[f.name] = value if isinstance(value, (int, float, str, bool, tuple)) else str(value)
        return out


def bootstrap(settings: Settings, threads: int = 1) -> Settings:
    """Prepare this process for ``settings``; every entry point calls it once.

    Torch gets ``TORCH_THREADS`` intra-op threads, else ``threads``: one in the
    service (each request thread and the training thread then keeps to one core,
    where a shared pool of spinning OpenMP threads slowed a training five-fold on
    2 busy cores), every core for a command that has the machine to itself;
    training and inference run on ``DEVICE`` (``cuda`` without a GPU stops
    start-up with a ``ConfigError``); logging gets ``LOG_LEVEL``; keys and URL passwords are masked in every log
    record from now on.
    """
    import torch

    from segmenter import device

    torch.set_num_threads(settings.torch_threads or threads)
    device.use(settings.device)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.log_level != "DEBUG":  # label-studio-sdk's HTTP client logs every request at INFO
        logging.getLogger("httpx").setLevel(logging.WARNING)
    remember(settings.label_studio_api_key, settings.basic_auth_pass)
    install()
    return settings
