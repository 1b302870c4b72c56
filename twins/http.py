"""Request parsing shared by the dashboard, the API and the old product's `/upload`."""

from __future__ import annotations

from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest
from rest_framework.request import Request


def uploaded_files(request: HttpRequest | Request) -> list[UploadedFile]:
    """Every uploaded photo of a multipart request: the `files` parts, plus a single `file` (older clients).

    Too many parts, or a body over Django's limits, never reaches here: twinsite.middleware's
    RequestLimitsMiddleware answers those on every path (JSON in the API, a message on the page).
    """
    return request.FILES.getlist("files") + request.FILES.getlist("file")
