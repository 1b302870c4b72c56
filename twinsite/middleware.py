from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.gzip import GZipMiddleware
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from rest_framework.views import APIView

from twinsite.errors import request_limit_error, wants_json

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


class RequestLimitsMiddleware:
    """Too many files, or a body over Django's limits: one answer on every path, before any view runs.

    Django refuses such a body wherever it is parsed first, and its answer was a bare 400 page and an
    error-level traceback. For a dashboard form that place is the CSRF middleware, before the view:
    so this reads a form's body here, just ahead of it, and answers with the page the form came from
    and the message (a styled 400 page when there is no page of ours to go back to). DRF views (the
    API, the old product's routes) parse inside the view, after authentication, in DRF's session CSRF
    check or its parsers: the refusal is caught on its way out and answered in JSON (the shape of
    twinsite/errors.py), as it is for any program (wants_json).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func: Callable, view_args: tuple, view_kwargs: dict):
        if request.method != "POST" or not request.content_type.startswith("multipart/") or _is_api_view(view_func):
            return None
        try:
            request.FILES  # noqa: B018 (parses the body now, as the CSRF check would next)
        except (TooManyFilesSent, RequestDataTooBig) as exc:
            return self._refuse(request, exc, api=False)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (TooManyFilesSent, RequestDataTooBig)):
            return None
        match = request.resolver_match
        return self._refuse(request, exception, api=match is not None and _is_api_view(match.func))

    def _refuse(self, request: HttpRequest, exc: Exception, *, api: bool) -> HttpResponse:
        error = request_limit_error(exc)
        logger.warning("request body refused", extra={"path": request.path, "code": error.code})
        if api or wants_json(request):
            return JsonResponse(error.as_dict(), status=error.status_code)
        back = request.headers.get("Referer", "")
        if back and url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            messages.error(request, error.message)
            return redirect(back)
        return render(request, "400.html", {"message": error.message}, status=error.status_code)


def _is_api_view(view_func: Callable) -> bool:
    # DRF views (the API and the old product's routes) answer JSON; the dashboard's own views, pages.
    return isinstance(getattr(view_func, "cls", None), type) and issubclass(view_func.cls, APIView)
