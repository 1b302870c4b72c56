from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

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
