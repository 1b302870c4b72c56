"""The project's error type and the one place it becomes HTTP.

Services raise TwinsiteError subclasses; the API exception handler and the
dashboard turn them into `{"error": {"code", "message", "fields"?}}` or a form
message. Bad input never becomes a 500.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFilesSent
from django.http import Http404, HttpRequest
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class TwinsiteError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        return {"error": body}


class ValidationFailed(TwinsiteError):
    code = "invalid"


class NotFound(TwinsiteError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Conflict(TwinsiteError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class PayloadTooLarge(TwinsiteError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "too_large"


class UnsupportedMedia(TwinsiteError):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media"


class QuotaExceeded(TwinsiteError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "quota_exceeded"


class ServiceUnavailable(TwinsiteError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "unavailable"


def wants_json(request: HttpRequest) -> bool:
    """Whether an error for this request is answered in JSON (a program) rather than a page."""
    # A request with an Authorization header is a program (API token), whatever the path: the old
    # product's routes and the private image URLs live outside /api/.
    return (
        request.path.startswith("/api/")
        or "application/json" in request.headers.get("Accept", "")
        or "Authorization" in request.headers
    )


def request_limit_error(exc: Exception) -> TwinsiteError | None:
    """Our error for Django's refusal of a request body over its limits (None for anything else).

    Django raises these while parsing the body, wherever that first happens (the CSRF check, DRF's
    parser, a view): twinsite.middleware.RequestLimitsMiddleware turns them into one answer.
    """
    if isinstance(exc, TooManyFilesSent):
        return ValidationFailed(
            f"Too many files in one request; send at most {settings.TWIN_MAX_PHOTOS} at a time.",
            code="too_many_files",
        )
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge("The request is too large.")
    return None


_DRF_CODES = {
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "authentication_failed",
    drf_exceptions.PermissionDenied: "permission_denied",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media",
    drf_exceptions.Throttled: "throttled",
    drf_exceptions.ParseError: "parse_error",
    drf_exceptions.ValidationError: "invalid",
}


def _flatten(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [f"{key}: {msg}" for key, value in detail.items() for msg in _flatten(value)]
    if isinstance(detail, list):
        return [msg for item in detail for msg in _flatten(item)]
    return [str(detail)]


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, TwinsiteError):
        response = Response(exc.as_dict(), status=exc.status_code)
        if isinstance(exc, QuotaExceeded):
            response["Retry-After"] = "60"
        return response
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django log it and answer 500
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, drf_exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = {key: _flatten(value) for key, value in detail.items()}
            non_field = fields.pop("non_field_errors", [])
            message = non_field[0] if non_field else "Some fields are invalid: " + ", ".join(sorted(fields))
            body = {"code": code, "message": message}
            if fields:
                body["fields"] = fields
        else:
            body = {"code": code, "message": "; ".join(_flatten(detail))}
    else:
        body = {"code": code, "message": "; ".join(_flatten(exc.detail))}
    response.data = {"error": body}
    return response
