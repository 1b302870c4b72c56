# Twinsite web tier: Django + gunicorn + WhiteNoise, no CUDA and no ML stack.
# Also runs the `default` django-q2 cluster (light tasks, schedules) and the one-shot migrate job.
#   docker build -f docker/web.Dockerfile -t twinsite-web .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TWINSITE_ENV=production TWINSITE_DATA_DIR=/data MEDIA_ROOT=/data/media STATIC_ROOT=/app/staticfiles

WORKDIR /app
# Media volumes mounted at /data/media start out owned by this user (uid 1000, as in the worker image).
RUN useradd --create-home --uid 1000 twinsite && mkdir -p /data/media && chown -R 1000:1000 /data
# requirements.txt lists the web stack first and the ML stack after its "# ML stack" line. The web
# process never imports the ML stack (a test checks), so this image installs only the part above it.
COPY requirements.txt ./
RUN sed '/^# ML stack/,$d' requirements.txt > requirements-web.txt && pip install -r requirements-web.txt
COPY . .
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v0

USER 1000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 CMD ["python", "docker/healthcheck.py", "web"]
# 4 processes x 4 threads: the web tier only talks to Postgres and storage. Request metrics of all
# processes are summed when PROMETHEUS_MULTIPROC_DIR points at an empty directory (compose does).
CMD ["gunicorn", "twinsite.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4", "--access-logfile", "-", "--timeout", "60"]
