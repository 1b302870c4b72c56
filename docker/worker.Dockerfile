# Twinsite GPU worker: runs `manage.py qcluster` for the `gpu` cluster (enrollment + generation).
# One container per GPU; pin it with CUDA_VISIBLE_DEVICES / a device reservation.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TWINSITE_ENV=production TWINSITE_DATA_DIR=/data TWIN_MODELS_DIR=/models INSIGHTFACE_ROOT=/models/insightface \
    TWIN_BACKEND=sdxl Q_CLUSTER_NAME=gpu TORCHINDUCTOR_CACHE_DIR=/models/inductor-cache

RUN apt-get update && apt-get install -y --no-install-recommends \
      software-properties-common build-essential libgl1 libglib2.0-0 \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /venv
ENV PATH=/venv/bin:$PATH

WORKDIR /app
COPY requirements.txt requirements-gpu.txt ./
# CUDA torch first (same version as requirements.txt), then the rest with onnxruntime-gpu.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128 \
    && pip install -r requirements-gpu.txt && pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps onnxruntime-gpu==1.32.0
COPY . .
RUN useradd --create-home --uid 1000 twinsite && mkdir -p /data /models && chown twinsite /data /models
USER twinsite

# The worker is healthy while its cluster process runs; django-q2 restarts crashed workers itself.
HEALTHCHECK --interval=30s --timeout=10s --start-period=600s --retries=3 \
  CMD pgrep -f "manage.py qcluster" >/dev/null || exit 1
CMD ["python", "manage.py", "qcluster"]
