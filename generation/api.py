"""Generation REST API (token or session auth). HTTP only: parse, call a service or selector, shape the reply.

Every lookup goes through the selectors: a job is visible to its owner and to staff, and changed
(cancel, delete) by its owner only (staff get 403: they change others' data in the admin); a new job
runs only on one of the caller's own twins (another user's twin answers 404, for staff too).
"""

from __future__ import annotations

from django.http import FileResponse, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generation import selectors, services
from generation.downloads import image_response, zip_response
from generation.serializers import GenerationJobSerializer, GenerationRequestSerializer
from twins.selectors import get_own_twin
from twinsite.pagination import DefaultPagination, get_paginated_response


class GenerationListView(APIView):
    """List your generation jobs (newest first) or submit a new one (202, runs on the GPU queue)."""

    pagination_class = DefaultPagination

    @extend_schema(responses=GenerationJobSerializer(many=True))
    def get(self, request: Request) -> Response:
        return get_paginated_response(
            serializer_class=GenerationJobSerializer,
            queryset=selectors.jobs_visible_to(user=request.user),
            request=request,
            view=self,
        )

    @extend_schema(request=GenerationRequestSerializer, responses={202: GenerationJobSerializer})
    def post(self, request: Request) -> Response:
        data = GenerationRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        twin = get_own_twin(owner=request.user, twin_id=fields.pop("twin"))
        job = services.submit_generation(owner=request.user, twin=twin, **fields)
        return Response(
            GenerationJobSerializer(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )


class GenerationDetailView(APIView):
    @extend_schema(responses=GenerationJobSerializer)
    def get(self, request: Request, pk: int) -> Response:
        job = selectors.get_job(user=request.user, job_id=pk)
        return Response(GenerationJobSerializer(job, context={"request": request}).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.delete_generation(job=selectors.get_job(user=request.user, job_id=pk, for_change=True))
        return Response(status=status.HTTP_204_NO_CONTENT)


class GenerationCancelView(APIView):
    @extend_schema(request=None, responses=GenerationJobSerializer)
    def post(self, request: Request, pk: int) -> Response:
        job = services.cancel_generation(job=selectors.get_job(user=request.user, job_id=pk, for_change=True))
        return Response(
            GenerationJobSerializer(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )


class GenerationImageView(APIView):
    """The PNG itself, for its owner or staff."""

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int, number: int) -> FileResponse:
        job = selectors.get_job(user=request.user, job_id=pk)
        return image_response(job=job, number=number, as_attachment="download" in request.GET)


class GenerationZipView(APIView):
    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int) -> HttpResponse:
        return zip_response(job=selectors.get_job(user=request.user, job_id=pk))
