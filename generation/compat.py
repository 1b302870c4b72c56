"""The routes of the product Twinsite replaces, so existing scripts keep working.

`/upload` creates a twin from the posted photos and starts its enrollment; `/generate` runs on the
caller's most recent ready twin. Job ids are `twin-<id>` for an enrollment and `<id>` for a
generation. Token or session auth, JSON, the same error shape as the API.
"""

from __future__ import annotations

import re

from django.db import transaction
from django.http import FileResponse, Http404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation import services
from generation.downloads import image_response
from generation.models import GenerationJob
from generation.selectors import get_job, jobs_for_owner
from generation.serializers import GenerateRequestSerializer, GenerationJobSerializer
from twins import selectors as twin_selectors
from twins import services as twin_services
from twins.http import uploaded_files
from twins.models import Twin
from twins.serializers import SelfieSerializer, TwinSerializer, upload_result_data
from twinsite.errors import Conflict

_ENROLLMENT_ID = re.compile(r"^twin-(\d+)$")
_GENERATION_ID = re.compile(r"^(\d+)$")
_IMAGE_NAME = re.compile(r"^avatar_(\d{3})\.png$")


def _twin_job(twin: Twin, request: Request) -> dict:
    return {
        "job_id": f"twin-{twin.pk}",
        "type": "enrollment",
        "status": twin.status,
        "twin": TwinSerializer(twin, context={"request": request}).data,
    }


def _generation_job(job: GenerationJob, request: Request) -> dict:
    return {
        "job_id": str(job.pk),
        "type": "generation",
        "status": job.status,
        "generation": GenerationJobSerializer(job, context={"request": request}).data,
    }


class UploadView(APIView):
    """Old `/upload`: multipart `files` → a new twin, enrolled right away."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": OpenApiTypes.OBJECT}, responses={202: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        uploads = uploaded_files(request)
        name = (request.data.get("name") or "").strip() or f"Upload {timezone.now():%Y-%m-%d %H:%M}"
        with transaction.atomic():
            twin = twin_services.create_twin(owner=request.user, name=name[:100])
            result = twin_services.add_selfies(twin=twin, uploads=uploads)
        twin = twin_services.start_enrollment(twin=result.twin)
        body = _twin_job(twin, request) | {"upload": upload_result_data(result, context={"request": request})}
        return Response(body, status=status.HTTP_202_ACCEPTED)


class GenerateView(APIView):
    """Old `/generate`: `{"prompt", "num_images"}` on your most recent ready twin (or `twin`)."""

    @extend_schema(request=GenerateRequestSerializer, responses={202: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        data = GenerateRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        twin_id = fields.pop("twin")
        if twin_id:
            twin = twin_selectors.get_twin(user=request.user, twin_id=twin_id)
        else:
            twin = twin_selectors.twins_for_owner(owner=request.user).filter(status=Twin.Status.READY).first()
            if twin is None:
                raise Conflict(
                    "You have no ready twin yet: upload selfies to /upload and wait for enrollment.",
                    code="no_ready_twin",
                )
        job = services.submit_generation(owner=request.user, twin=twin, **fields)
        return Response(_generation_job(job, request), status=status.HTTP_202_ACCEPTED)


class StatusView(APIView):
    """Old `/status/<job_id>`: an enrollment (`twin-<id>`, with each photo's verdict) or a generation (`<id>`)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, job_id: str) -> Response:
        if match := _ENROLLMENT_ID.match(job_id):
            twin = twin_selectors.get_twin(user=request.user, twin_id=int(match[1]))
            # Each photo's verdict (accepted/rejected, reason code, message), as the token API shows it.
            selfies = SelfieSerializer(twin_selectors.selfies_of(twin=twin), many=True, context={"request": request})
            return Response(_twin_job(twin, request) | {"selfies": selfies.data})
        if match := _GENERATION_ID.match(job_id):
            return Response(_generation_job(get_job(user=request.user, job_id=int(match[1])), request))
        raise Http404("No such job.")


class JobsView(APIView):
    """Old `/jobs`: your enrollments and generations, newest first (the latest 100)."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        twins = twin_selectors.twins_for_owner(owner=request.user)[:100]
        jobs = jobs_for_owner(owner=request.user)[:100]
        entries = [(t.updated_at, _twin_job(t, request)) for t in twins]
        entries += [(j.created_at, _generation_job(j, request)) for j in jobs]
        entries.sort(key=lambda entry: entry[0], reverse=True)
        return Response({"jobs": [entry for _, entry in entries[:100]]})


class DownloadView(APIView):
    """Old `/download/<job_id>/<filename>`: `avatar_001.png` … of a finished generation."""

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    def get(self, request: Request, job_id: str, filename: str) -> FileResponse:
        job_match, name_match = _GENERATION_ID.match(job_id), _IMAGE_NAME.match(filename)
        if not (job_match and name_match):
            raise Http404("No such file.")
        job = get_job(user=request.user, job_id=int(job_match[1]))
        return image_response(job=job, number=int(name_match[1]), as_attachment=True)
