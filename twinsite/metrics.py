"""Prometheus metrics at `/metrics`: queue, jobs, durations and identity scores, read at scrape time.

Everything about the work is computed from the database (and the queue broker) when Prometheus
asks, not counted in one process's memory, so any web process on any host answers a scrape
with the same numbers however many GPU workers, hosts and web processes there are.
Only the HTTP request metrics are per process; under gunicorn set PROMETHEUS_MULTIPROC_DIR
(an empty directory per container start) and every worker process's requests are summed.

Access: staff users (session), or `Authorization: Bearer <METRICS_TOKEN>`, or anyone when
METRICS_PUBLIC is on (for a scrape port that only Prometheus can reach).

Imports nothing heavy: the web process serves this.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

QUEUE_CLUSTERS = ("default", "gpu")
# Seconds. A tiny-backend job on a CPU takes ~1 s; SDXL, 30 steps, 4 images on one GPU ~20-60 s.
RUN_SECONDS_BUCKETS = (1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800)
WAIT_SECONDS_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Cosine of an output's face embedding to the twin's; ArcFace puts one person at roughly 0.3-0.8.
IDENTITY_SCORE_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


# --- from the database, at scrape time --------------------------------------------------------


class DatabaseCollector(Collector):
    """Queue depth, jobs and twins by status, job duration and identity-score histograms."""

    def collect(self) -> Iterator[Metric]:
        yield from _queue_metrics()
        yield from _status_metrics()
        yield from _duration_metrics()
        yield from _identity_score_metrics()

    def describe(self) -> Iterable[Metric]:
        return []  # collected on demand only; nothing to describe ahead of a scrape


def _queue_metrics() -> Iterator[Metric]:
    from django_q.brokers import get_broker
    from django_q.status import Stat

    depth = GaugeMetricFamily("twinsite_queue_depth", "Tasks waiting in the queue, per cluster.", labels=["cluster"])
    broker_up = GaugeMetricFamily("twinsite_queue_broker_up", "1 when the queue broker answered.", labels=["cluster"])
    for cluster in QUEUE_CLUSTERS:
        try:
            size = get_broker(cluster).queue_size()
        except Exception:  # a broken broker is what this scrape has to show, not a 500
            broker_up.add_metric([cluster], 0)
            continue
        broker_up.add_metric([cluster], 1)
        depth.add_metric([cluster], size)
    yield depth
    yield broker_up

    workers = GaugeMetricFamily(
        "twinsite_queue_workers",
        "Worker processes of the qcluster processes seen in the last seconds, per host.",
        labels=["host"],
    )
    per_host: dict[str, int] = {}
    try:
        for stat in Stat.get_all():
            per_host[stat.host] = per_host.get(stat.host, 0) + len(stat.workers)
    except Exception:
        per_host = {}
    for host, count in sorted(per_host.items()):
        workers.add_metric([host], count)
    yield workers


def _status_metrics() -> Iterator[Metric]:
    from generation.models import GenerationJob
    from twins.models import Twin

    for name, doc, model in (
        ("twinsite_generation_jobs", "Generation jobs by status.", GenerationJob),
        ("twinsite_twins", "Twins by status.", Twin),
    ):
        counts = dict(model.objects.order_by().values_list("status").annotate(n=Count("pk")))
        family = GaugeMetricFamily(name, doc, labels=["status"])
        for status in model.Status.values:
            family.add_metric([status], counts.get(status, 0))
        yield family


def _histogram_points(
    queryset, field: str, buckets: tuple[float, ...], *, seconds: bool
) -> tuple[list[tuple[str, float]], float]:
    """Cumulative bucket counts and the sum of `field`, in one aggregate query."""

    def bound(value: float) -> object:
        return timedelta(seconds=value) if seconds else value

    aggregates = {f"le_{i}": Count("pk", filter=Q(**{f"{field}__lte": bound(b)})) for i, b in enumerate(buckets)}
    row = queryset.aggregate(total=Count("pk"), sum=Sum(field), **aggregates)
    raw_sum = row["sum"] or 0.0
    total_sum = raw_sum.total_seconds() if isinstance(raw_sum, timedelta) else float(raw_sum)
    points = [(str(float(b)), row[f"le_{i}"]) for i, b in enumerate(buckets)] + [("+Inf", row["total"])]
    return points, total_sum


def _duration_metrics() -> Iterator[Metric]:
    from generation.models import GenerationJob

    started = GenerationJob.objects.order_by().filter(started_at__isnull=False)
    finished = started.filter(finished_at__isnull=False).annotate(
        run=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    )
    run = HistogramMetricFamily(
        "twinsite_generation_run_seconds",
        "Seconds from a worker starting a generation job to its end, by final status.",
        labels=["status"],
    )
    for status in GenerationJob.FINISHED_STATUSES:
        points, total = _histogram_points(finished.filter(status=status), "run", RUN_SECONDS_BUCKETS, seconds=True)
        run.add_metric([status], points, sum_value=total)
    yield run

    waited = started.annotate(wait=ExpressionWrapper(F("started_at") - F("created_at"), output_field=DurationField()))
    wait = HistogramMetricFamily(
        "twinsite_generation_queue_wait_seconds",
        "Seconds a generation job waited in the queue before a worker started it.",
    )
    points, total = _histogram_points(waited, "wait", WAIT_SECONDS_BUCKETS, seconds=True)
    wait.add_metric([], points, sum_value=total)
    yield wait


def _identity_score_metrics() -> Iterator[Metric]:
    from generation.models import GeneratedImage

    images = GeneratedImage.objects.order_by()
    score = HistogramMetricFamily(
        "twinsite_identity_score", "Identity score of generated images: cosine of the output's face to the twin."
    )
    points, total = _histogram_points(
        images.filter(identity_score__isnull=False), "identity_score", IDENTITY_SCORE_BUCKETS, seconds=False
    )
    score.add_metric([], points, sum_value=total)
    yield score
    unscored = CounterMetricFamily(
        "twinsite_generated_images_unscored",
        "Generated images in which no face was found, so without an identity score.",
    )
    unscored.add_metric([], images.filter(identity_score__isnull=True).count())
    yield unscored


# --- HTTP requests, per process ---------------------------------------------------------------

# A registry of our own: the default one would add process metrics that are wrong in multiprocess mode.
REQUEST_REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "twinsite_http_requests",
    "HTTP requests answered, by view and status.",
    ["method", "view", "status"],
    registry=REQUEST_REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "twinsite_http_request_duration_seconds",
    "Time to answer an HTTP request, by view.",
    ["view"],
    registry=REQUEST_REGISTRY,
)


class RequestMetricsMiddleware:
    """Counts and times every request. Labelled by URL name, so unknown paths can't grow the label set."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name or match.route or "unnamed") if match else "unmatched"
        method = request.method if request.method in _HTTP_METHODS else "other"
        REQUESTS.labels(method, view, str(response.status_code)).inc()
        REQUEST_SECONDS.labels(view).observe(time.perf_counter() - started)
        return response


def _request_metrics_text() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REQUEST_REGISTRY)


# --- the endpoint -----------------------------------------------------------------------------


def render_metrics() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return generate_latest(registry) + _request_metrics_text()


def _allowed(request: HttpRequest) -> bool:
    if settings.METRICS_PUBLIC:
        return True
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), token.encode()):
        return True
    user = getattr(request, "user", None)
    return bool(user and user.is_authenticated and user.is_staff)


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        signed_in = getattr(request, "user", None) is not None and request.user.is_authenticated
        code, status = ("permission_denied", 403) if signed_in else ("not_authenticated", 401)
        response = JsonResponse(
            {
                "error": {
                    "code": code,
                    "message": ("Metrics are for staff, or send Authorization: Bearer <METRICS_TOKEN>."),
                }
            },
            status=status,
        )
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
