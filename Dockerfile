# syntax=docker/dockerfile:1
#
# Image of the prediction API: `docker build -t cats-dogs-other .`
#
# The builder runs the same two steps as `make setup` and CI: ./init_packages.sh builds the
# inference wheel, then `pip install -r cats_dogs_other/api/requirements.txt` installs it with
# the API's pinned runtime: ONNX Runtime serving the exported model.onnx, no TensorFlow. tests/deploy/test_dockerfile.py replays this file's build steps
# without a Docker engine, so every CI run proves them.
#
# RUN steps name paths through the variables set by ENV (never literally), which is what lets
# that test replay them in a temporary directory.

FROM python:3.11.14-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BUILD_VENV=/opt/build \
    VIRTUAL_ENV=/opt/venv

WORKDIR /src

# The wheel-building tool gets its own venv so it does not ship in the runtime one.
RUN python -m venv "$BUILD_VENV" \
    && "$BUILD_VENV/bin/pip" install --no-cache-dir build==1.6.1 \
    && python -m venv "$VIRTUAL_ENV"

COPY init_packages.sh ./
COPY packages/inference/ packages/inference/
COPY cats_dogs_other/api/requirements.txt cats_dogs_other/api/requirements.txt

RUN PYTHON="$BUILD_VENV/bin/python" ./init_packages.sh \
    && "$VIRTUAL_ENV/bin/pip" install --no-cache-dir -r cats_dogs_other/api/requirements.txt


FROM python:3.11.14-slim-bookworm AS runtime

# HOME, KERAS_HOME and MODEL_CACHE_DIR point at /tmp: the only writable place when the root
# filesystem is read-only (Kubernetes mounts an emptyDir there).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    KERAS_HOME=/tmp/.keras \
    MODEL_CACHE_DIR=/tmp/model-cache \
    TF_CPP_MIN_LOG_LEVEL=2 \
    HOST=0.0.0.0 \
    PORT=8080

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Code and the default model stay owned by root: the server reads them and writes nothing here.
# MODEL_PATH (or a volume mounted over cats_dogs_other/model) replaces the default model.
COPY boot.py ./
COPY cats_dogs_other/__init__.py cats_dogs_other/
COPY cats_dogs_other/core/ cats_dogs_other/core/
COPY cats_dogs_other/api/ cats_dogs_other/api/
COPY cats_dogs_other/model/ cats_dogs_other/model/

USER 10001:10001
EXPOSE 8080

# No curl in the slim image: the standard library asks /health on the configured port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8080'), timeout=4)"]

CMD ["python", "boot.py"]
