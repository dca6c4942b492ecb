# The backend's image: gunicorn serving _wsgi:app on port 9090, models in the /data/models volume.
#
#   docker build -t ls-timeseries-segmenter .                                  # CPU (default)
#   docker build --build-arg TORCH_VARIANT=cuda -t ls-timeseries-segmenter:gpu .  # CUDA torch
#
# The CPU variant takes torch from PyPI's CPU wheel index (TORCH_CPU_INDEX), so the plain
# build gets the CPU wheel, not the CUDA one with its ~4 GB of nvidia libraries. The cuda
# variant takes torch from PyPI, whose Linux wheel is the CUDA build. docker-compose.yml
# builds both (see README, "Docker").

# ---- build: a virtualenv with requirements.txt only (no dev or test packages) ----
FROM python:3.11-slim AS build
ARG TORCH_VARIANT=cpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
COPY requirements.txt ./
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eu; \
    torch_version=$(sed -n 's/^torch==//p' requirements.txt); \
    case "$TORCH_VARIANT" in \
      cpu)  set -- --extra-index-url "$TORCH_CPU_INDEX" "torch==$torch_version+cpu" ;; \
      cuda) set -- "torch==$torch_version" ;; \
      *)    echo "TORCH_VARIANT must be cpu or cuda, not $TORCH_VARIANT" >&2; exit 1 ;; \
    esac; \
    python3 -m venv .venv; \
    .venv/bin/pip install --disable-pip-version-check --progress-bar off "$@" -r requirements.txt; \
    .venv/bin/python -c "import torch; print('torch', torch.__version__)"; \
    .venv/bin/pip uninstall --disable-pip-version-check -y -q pip
# Left out of the image (about 420 MB): torch's C++ headers, CMake files and C++ test programs
# (for building extensions and testing torch itself; torch_shm_manager stays), the packages'
# own test suites (pandas, sympy, networkx, matplotlib, and onnx's backend
# test data, 17 MB; not numpy's: numpy.testing imports from them), and the bytecode caches of sympy and networkx, which only
# torch's compiler stack imports and the backend never loads (Python compiles them in memory if
# it ever does).
RUN set -eu; \
    site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
    rm -rf "$site/torch/include" "$site/torch/share" "$site/torch/test" "$site/onnx/backend/test"; \
    find "$site/torch/bin" -type f ! -name torch_shm_manager -delete; \
    for package in pandas sympy networkx matplotlib; do \
      find "$site/$package" -depth -type d -name tests -exec rm -rf {} +; \
    done; \
    find "$site/sympy" "$site/networkx" -depth -type d -name __pycache__ -exec rm -rf {} +; \
    .venv/bin/python -c "import torch, pandas, onnx, label_studio_sdk.label_interface; \
torch.nn.LSTM(2, 4)(torch.zeros(1, 3, 2))"

# ---- runtime: the virtualenv and the application code, run as a non-root user ----
FROM python:3.11-slim AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODEL_DIR=/data/models \
    PORT=9090
RUN useradd --create-home --uid 1000 app && mkdir -p /data/models && chown app:app /data/models
WORKDIR /app
# Code and packages stay owned by root: the app user writes only to /data/models.
COPY --from=build /app/.venv /app/.venv
COPY _wsgi.py model.py gunicorn.conf.py ./
COPY segmenter segmenter
COPY scripts/healthcheck.py scripts/healthcheck.py
USER app
EXPOSE 9090
VOLUME ["/data/models"]
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/app/.venv/bin/python", "-m", "scripts.healthcheck"]
CMD ["/app/.venv/bin/gunicorn", "-c", "gunicorn.conf.py", "_wsgi:app"]
