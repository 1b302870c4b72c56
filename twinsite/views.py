from __future__ import annotations

import logging
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from twinsite.errors import wants_json
from twinsite.readiness import check_readiness, database_status

logger = logging.getLogger(__name__)

_VERSIONED_PACKAGES = (
    "django",
    "djangorestframework",
    "django-q2",
    "diffusers",
    "torch",
    "transformers",
    "insightface",
    "onnxruntime",
    "onnxruntime-gpu",
)


@never_cache
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the web process answers and reaches its database."""
    ok, detail = database_status()
    if ok:
        return JsonResponse({"status": "ok"})
    return JsonResponse({"status": "error", "database": "unavailable", "detail": detail}, status=503)


@never_cache
def health_ready(request: HttpRequest) -> JsonResponse:
    """Readiness: the database, a live worker of each cluster, and a gpu worker with its models loaded.

    Public like /health, so a load balancer can ask; the reasons (paths, hosts) are on /system-status.
    """
    readiness = check_readiness()
    body = {"status": "ready" if readiness.ready else "not_ready", "checks": readiness.checks}
    return JsonResponse(body, status=200 if readiness.ready else 503)


def _package_versions() -> dict[str, str]:
    # Read from installed metadata: the web process must not import the ML stack.
    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _queue_status() -> dict[str, object]:
    from django_q.brokers import get_broker
    from django_q.status import Stat

    queues: dict[str, object] = {}
    for cluster in ("default", "gpu"):
        try:
            queues[cluster] = get_broker(cluster).queue_size()
        except Exception as exc:  # a broken broker is what this page exists to show
            queues[cluster] = f"unavailable: {exc.__class__.__name__}"
    try:
        workers = [
            {
                "cluster": stat.cluster_id,
                "host": stat.host,
                "status": stat.status,
                "workers": len(stat.workers),
                "uptime_s": round(stat.uptime()),
            }
            for stat in Stat.get_all()
        ]
    except Exception as exc:
        workers = [{"error": f"unavailable: {exc.__class__.__name__}"}]
    return {"broker": "orm" if settings.Q_BROKER == "orm" else "redis", "depth": queues, "workers": workers}


def _gpu_status() -> dict[str, object]:
    nvidia_smi = shutil.which("nvidia-smi")
    if not nvidia_smi:
        return {"present": Path("/proc/driver/nvidia/gpus").exists(), "devices": []}
    try:
        out = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {"present": True, "devices": []}
    devices = [line.strip() for line in out.splitlines() if line.strip()]
    return {"present": bool(devices), "devices": devices}


def _disk_status() -> dict[str, object]:
    if settings.STORAGE_BACKEND != "local":
        return {"storage": settings.STORAGE_BACKEND}
    usage = shutil.disk_usage(settings.MEDIA_ROOT if Path(settings.MEDIA_ROOT).exists() else settings.DATA_DIR)
    return {"storage": "local", "free_gb": round(usage.free / 1e9, 2), "total_gb": round(usage.total / 1e9, 2)}


class IsStaffOrToken(BasePermission):
    """Staff through the session, or any caller with an API token."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return bool(user.is_staff or request.auth is not None)


class SystemStatusView(APIView):
    permission_classes = [IsStaffOrToken]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        readiness = check_readiness()
        db_ok = readiness.database_ok
        body = {
            # "ok" only while a worker can enroll and generate: a site with no usable worker is not ok.
            "status": "ok" if readiness.ready else "degraded",
            "problems": readiness.problems,
            "checks": readiness.checks,
            "versions": _package_versions(),
            "database": {"ok": db_ok, "detail": readiness.database_detail},
            "queue": _queue_status() if db_ok else {"error": "database unavailable"},
            # What each live worker process has loaded, from its heartbeat (generation/worker_status.py).
            "workers": readiness.workers,
            "disk": _disk_status(),
            "gpu": _gpu_status(),
            "generation_backend": settings.TWIN_BACKEND,
        }
        return Response(body, status=200 if db_ok else 503)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if wants_json(request):
        return JsonResponse({"error": {"code": "not_found", "message": "Not found."}}, status=404)
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if wants_json(request):
        return JsonResponse(
            {"error": {"code": "server_error", "message": "Something went wrong on our side."}}, status=500
        )
    return render(request, "500.html", status=500)
