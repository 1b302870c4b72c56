"""Request parsing shared by the dashboard, the API and the old product's `/upload`."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest
from rest_framework.request import Request

from twinsite.errors import PayloadTooLarge, ValidationFailed


def uploaded_files(request: HttpRequest | Request) -> list[UploadedFile]:
    """Every uploaded photo of a multipart request: the `files` parts, plus a single `file` (older clients).

    Too many parts, or a body over Django's limits, becomes our error (JSON in the API, a message on
    the page) instead of Django's bare 400.
    """
    try:
        return request.FILES.getlist("files") + request.FILES.getlist("file")
    except TooManyFilesSent:
        raise ValidationFailed(
            f"Too many files in one request; send at most {settings.TWIN_MAX_PHOTOS} at a time.",
            code="too_many_files",
        ) from None
    except RequestDataTooBig:
        raise PayloadTooLarge("The request is too large.") from None
