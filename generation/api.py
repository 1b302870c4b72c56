from __future__ import annotations

from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from generation import services
from generation.downloads import image_response, zip_response
from generation.selectors import jobs_visible_to
from generation.serializers import GenerationJobSerializer, GenerationRequestSerializer
from twins.models import Twin


class GenerationListView(ListAPIView):
    """List your generation jobs (newest first) or submit a new one (202, runs on the GPU queue)."""

    serializer_class = GenerationJobSerializer

    def get_queryset(self):
        return jobs_visible_to(user=self.request.user)

    @extend_schema(request=GenerationRequestSerializer, responses={202: GenerationJobSerializer})
    def post(self, request: Request) -> Response:
        data = GenerationRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        twin = get_object_or_404(Twin, pk=fields.pop("twin"), owner=request.user)
        job = services.submit_generation(owner=request.user, twin=twin, **fields)
        return Response(GenerationJobSerializer(job, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)


class GenerationDetailView(GenericAPIView):
    serializer_class = GenerationJobSerializer

    def get_queryset(self):
        return jobs_visible_to(user=self.request.user)

    def get(self, request: Request, pk: int) -> Response:
        return Response(self.get_serializer(self.get_object()).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.delete_generation(job=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class GenerationCancelView(GenericAPIView):
    serializer_class = GenerationJobSerializer

    def get_queryset(self):
        return jobs_visible_to(user=self.request.user)

    @extend_schema(request=None)
    def post(self, request: Request, pk: int) -> Response:
        job = services.cancel_generation(job=self.get_object())
        return Response(self.get_serializer(job).data, status=status.HTTP_202_ACCEPTED)


class GenerationImageView(GenericAPIView):
    """The PNG itself, for its owner or staff."""

    def get_queryset(self):
        return jobs_visible_to(user=self.request.user)

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int, number: int) -> FileResponse:
        return image_response(job=self.get_object(), number=number, as_attachment="download" in request.GET)


class GenerationZipView(GenericAPIView):
    def get_queryset(self):
        return jobs_visible_to(user=self.request.user)

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int) -> HttpResponse:
        return zip_response(job=self.get_object())
