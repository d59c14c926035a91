# syntax=docker/dockerfile:1
# Slim CPU image: serve dependencies only (no torch), non-root, models baked in (mount /models to override).
# GPU variant: docker build --build-arg ORT_PACKAGE=onnxruntime-gpu --build-arg BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 ...
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG ORT_PACKAGE=onnxruntime
WORKDIR /src
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-cache-dir ".[serve]" \
 && if [ "$ORT_PACKAGE" != "onnxruntime" ]; then pip uninstall -y onnxruntime && pip install --no-cache-dir "$ORT_PACKAGE"; fi

FROM ${BASE} AS runtime
RUN groupadd --system --gid 10001 neuroserve \
 && useradd --system --uid 10001 --gid neuroserve --no-create-home --shell /usr/sbin/nologin neuroserve
COPY --from=build /opt/venv /opt/venv
COPY --chown=neuroserve:neuroserve models /models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NEUROSERVE_HOST=0.0.0.0 \
    NEUROSERVE_PORT=8000 \
    NEUROSERVE_MODELS_DIR=/models
USER neuroserve
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
CMD ["neuroserve", "serve"]
