# Twinsite GPU worker: `manage.py qcluster` for the `gpu` cluster (enrollment and generation).
# One container (one qcluster process) per GPU: give each container one card through its device
# reservation; inside, that card is the only one visible and torch uses it as cuda:0.
#   docker build -f docker/worker.Dockerfile -t twinsite-worker .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TWINSITE_ENV=production TWINSITE_DATA_DIR=/data MEDIA_ROOT=/data/media \
    TWIN_MODELS_DIR=/models INSIGHTFACE_ROOT=/models/insightface HF_HOME=/models/huggingface \
    TORCHINDUCTOR_CACHE_DIR=/models/inductor-cache TWIN_BACKEND=sdxl Q_CLUSTER_NAME=gpu

# Python 3.11 (the project's version) from deadsnakes; a compiler for insightface, which ships as source only.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential \
       libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /venv
ENV PATH=/venv/bin:$PATH

WORKDIR /app
COPY requirements.txt requirements-gpu.txt ./
# CUDA torch first (the version requirements.txt pins; a local "+cu128" build satisfies the pin), then the
# rest. requirements-gpu.txt adds onnxruntime-gpu beside the CPU onnxruntime that requirements.txt pins;
# both install into one `onnxruntime` package, so the CPU one is removed and the GPU one laid down again.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128 \
    && pip install -r requirements-gpu.txt \
    && pip uninstall -y onnxruntime \
    && pip install --force-reinstall --no-deps onnxruntime-gpu==1.32.0
COPY . .
# Volumes mounted at /data/media and /models start out owned by uid 1000, as in the web image
# (Ubuntu 24.04 images come with an `ubuntu` user holding that uid).
RUN (userdel --remove ubuntu || true) && useradd --create-home --uid 1000 twinsite \
    && mkdir -p /data/media /models && chown -R 1000:1000 /data /models
USER 1000

# Healthy while this host's cluster keeps its django-q2 stats fresh; a GPU load takes minutes at first start.
HEALTHCHECK --interval=30s --timeout=20s --start-period=600s --retries=3 CMD ["python", "docker/healthcheck.py", "worker"]
CMD ["python", "manage.py", "qcluster"]
