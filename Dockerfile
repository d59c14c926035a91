# syntax=docker/dockerfile:1
# Slim CPU image: serve dependencies only (no torch), non-root, models baked in (mount /models to override).
# GPU image (CUDA execution provider): Dockerfile.gpu (docker build -f Dockerfile.gpu -t neuroserve:gpu .).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG ORT_PACKAGE=onnxruntime==1.32.0
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
COPY requirements-serve.txt ./
RUN /opt/venv/bin/pip install --no-cache-dir -r requirements-serve.txt \
 && if [ "${ORT_PACKAGE%%==*}" != "onnxruntime" ]; then \
      /opt/venv/bin/pip uninstall -y onnxruntime && /opt/venv/bin/pip install --no-cache-dir "$ORT_PACKAGE"; \
    fi
COPY pyproject.toml README.md ./
COPY service ./service
COPY client ./client
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps .

FROM ${BASE} AS runtime
RUN groupadd --system --gid 10001 neuroserve \
 && useradd --system --uid 10001 --gid neuroserve --no-create-home --shell /usr/sbin/nologin neuroserve
COPY --from=build /opt/venv /opt/venv
COPY --chown=10001:10001 models /models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NEUROSERVE_HOST=0.0.0.0 \
    NEUROSERVE_PORT=8000 \
    NEUROSERVE_MODELS_DIR=/models \
    MALLOC_ARENA_MAX=2
USER 10001:10001
# 8000: REST (HTTP/1.1); 8001: the Open Inference Protocol over gRPC (NEUROSERVE_GRPC_PORT's default; 0 turns it off)
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
CMD ["neuroserve", "serve"]
