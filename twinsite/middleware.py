from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.gzip import GZipMiddleware

logger = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    """While the database is down, answer 503 JSON instead of a stack trace.

    Django reconnects on the next request (CONN_HEALTH_CHECKS), so the web
    process recovers by itself once the database is back.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, (OperationalError, InterfaceError)) or (
            isinstance(exception, DatabaseError) and "connection" in str(exception).lower()
        ):
            logger.error("database unavailable", extra={"path": request.path, "error": str(exception)[:200]})
            return JsonResponse(
                {"error": {"code": "unavailable", "message": "The database is unavailable; try again shortly."}},
                status=503,
            )
        return None


class PageCompressionMiddleware(GZipMiddleware):
    """gzip for HTML pages (a twin page: 22 KB, about 4 KB compressed). Only HTML: WhiteNoise answers for
    static files above this, already compressed, and images do not shrink.

    BREACH: a compressed response that holds a secret next to text an attacker can choose leaks the
    secret through its length, over many requests. The CSRF token is masked afresh in every response
    (Django), so it gives nothing away; a page that shows another secret, like the API token on
    Settings, is marked with @never_compress and goes out as it is. So is the whole admin: it lists
    API tokens (DRF's token admin) next to its search box.
    """

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        match = getattr(request, "resolver_match", None)
        if (
            getattr(response, "never_compress", False)
            or not response.get("Content-Type", "").startswith("text/html")
            or (match is not None and match.app_name == "admin")
        ):
            return response
        return super().process_response(request, response)


def never_compress(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Keeps PageCompressionMiddleware off a view's responses: for pages that show a secret (BREACH)."""

    @wraps(view)
    def wrapped(*args: object, **kwargs: object) -> HttpResponse:
        response = view(*args, **kwargs)
        response.never_compress = True
        return response

    return wrapped
