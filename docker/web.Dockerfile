# Twinsite web tier: Django + gunicorn + WhiteNoise. No CUDA; the ML stack is installed only
# because one requirements file serves both tiers, and it is never imported here (a test checks it).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TWINSITE_ENV=production TWINSITE_DATA_DIR=/data STATIC_ROOT=/app/staticfiles

WORKDIR /app
RUN useradd --create-home --uid 1000 twinsite && mkdir -p /data && chown twinsite /data
COPY requirements.txt ./
# The CPU build of torch keeps the web image small.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt
COPY --chown=twinsite . .
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v0

USER twinsite
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health').status != 200)"
CMD ["gunicorn", "twinsite.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4", \
     "--access-logfile", "-", "--timeout", "60"]
