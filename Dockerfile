# CPU image of the backend. It runs the same steps as ./start.sh:
# scripts/setup installs requirements.txt into /app/.venv, gunicorn serves _wsgi:app.
# To avoid pulling torch's CUDA wheel, pass a CPU wheel index:
#   docker build --build-arg PIP_EXTRA_INDEX_URL=<PyTorch CPU wheel index> .
FROM python:3.11-slim

ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} \
    PYTHONUNBUFFERED=1 \
    MODEL_DIR=/data/models \
    PORT=9090

RUN useradd --create-home --uid 1000 app && mkdir -p /app /data/models && chown -R app:app /app /data
WORKDIR /app
USER app

COPY --chown=app:app requirements.txt requirements-dev.txt ./
COPY --chown=app:app scripts/setup scripts/setup
RUN scripts/setup runtime

COPY --chown=app:app . .

EXPOSE 9090
VOLUME ["/data/models"]
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD .venv/bin/python scripts/healthcheck.py
CMD [".venv/bin/gunicorn", "-c", "gunicorn.conf.py", "_wsgi:app"]
