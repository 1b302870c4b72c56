"""Twins REST API (token or session auth). HTTP only: parse, call a service or selector, shape the reply.

Every lookup goes through twins.selectors, which scopes it to the caller: another user's
twin answers 404 on every route; staff may read any twin but change only their own.
"""

from __future__ import annotations

import mimetypes

from django.conf import settings
from django.db.models import QuerySet
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from twins import selectors, services
from twins.http import uploaded_files
from twins.models import Twin
from twins.serializers import (
    SelfieSerializer,
    SelfieUploadSerializer,
    TwinDetailSerializer,
    TwinNameSerializer,
    TwinSerializer,
    UploadResultSerializer,
    upload_result_data,
)
from twins.thumbnails import reference_face_webp, thumbnail_jpeg
from twinsite.pagination import DefaultPagination, get_paginated_response

_TRUE = {"1", "true", "yes"}


def _listed_twins(request: Request) -> QuerySet[Twin]:
    user = request.user
    if user.is_staff and request.query_params.get("all", "").lower() in _TRUE:
        return selectors.twins_visible_to(user=user)
    return selectors.twins_for_owner(owner=user)


class TwinListView(APIView):
    """Your twins, newest first (paginated). Create one with a name, then upload selfies to it."""

    pagination_class = DefaultPagination

    @extend_schema(
        parameters=[OpenApiParameter("all", bool, description="Staff only: list every user's twins.")],
        responses=TwinSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        return get_paginated_response(
            serializer_class=TwinSerializer, queryset=_listed_twins(request), request=request, view=self
        )

    @extend_schema(request=TwinNameSerializer, responses={201: TwinDetailSerializer})
    def post(self, request: Request) -> Response:
        form = TwinNameSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        twin = services.create_twin(owner=request.user, name=form.validated_data["name"])
        return Response(TwinDetailSerializer(twin, context={"request": request}).data, status=status.HTTP_201_CREATED)


class TwinDetailView(APIView):
    """One twin with every photo's verdict and the enrollment progress. PATCH renames; DELETE erases."""

    @extend_schema(responses=TwinDetailSerializer)
    def get(self, request: Request, twin_id: int) -> Response:
        twin = selectors.get_twin(user=request.user, twin_id=twin_id)
        return Response(TwinDetailSerializer(twin, context={"request": request}).data)

    @extend_schema(request=TwinNameSerializer, responses=TwinDetailSerializer)
    def patch(self, request: Request, twin_id: int) -> Response:
        twin = selectors.get_twin(user=request.user, twin_id=twin_id, for_change=True)
        form = TwinNameSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        twin = services.rename_twin(twin=twin, name=form.validated_data["name"])
        return Response(TwinDetailSerializer(twin, context={"request": request}).data)

    @extend_schema(responses={204: OpenApiResponse(description="Erased: photos, identity and generated images.")})
    def delete(self, request: Request, twin_id: int) -> Response:
        twin = selectors.get_twin(user=request.user, twin_id=twin_id, for_change=True)
        services.delete_twin(twin=twin)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TwinSelfiesView(APIView):
    """Upload selfies (multipart: many `files`, or one `file`). Each file gets its own verdict."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": SelfieUploadSerializer},
        responses={201: UploadResultSerializer, 400: None, 409: None, 413: None, 415: None},
    )
    def post(self, request: Request, twin_id: int) -> Response:
        twin = selectors.get_twin(user=request.user, twin_id=twin_id, for_change=True)
        result = services.add_selfies(twin=twin, uploads=uploaded_files(request))
        return Response(upload_result_data(result, context={"request": request}), status=status.HTTP_201_CREATED)


class TwinSelfieDetailView(APIView):
    """One photo and its verdict. DELETE removes it (not while the twin is enrolling)."""

    @extend_schema(responses=SelfieSerializer)
    def get(self, request: Request, twin_id: int, selfie_id: int) -> Response:
        selfie = selectors.get_selfie(user=request.user, twin_id=twin_id, selfie_id=selfie_id)
        return Response(SelfieSerializer(selfie, context={"request": request}).data)

    @extend_schema(responses={204: None, 409: None})
    def delete(self, request: Request, twin_id: int, selfie_id: int) -> Response:
        selfie = selectors.get_selfie(user=request.user, twin_id=twin_id, selfie_id=selfie_id, for_change=True)
        services.delete_selfie(selfie=selfie)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TwinEnrollView(APIView):
    """Start enrollment: 202, the twin is `enrolling`; poll the twin until `ready` or `failed`."""

    @extend_schema(request=None, responses={202: TwinDetailSerializer, 409: None})
    def post(self, request: Request, twin_id: int) -> Response:
        twin = selectors.get_twin(user=request.user, twin_id=twin_id, for_change=True)
        twin = services.start_enrollment(twin=twin)
        return Response(TwinDetailSerializer(twin, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)


def _image_response(file: FieldFile, *, thumbnail: bool, small_face: bool = False) -> HttpResponse:
    if not file:
        raise Http404("No image.")
    try:
        if small_face:
            response: HttpResponse = HttpResponse(reference_face_webp(file=file), content_type="image/webp")
            # Pages link it with the enrollment time in the URL (`v`), and a new enrollment makes a new crop:
            # a day in the browser's private cache never shows a stale face.
            response["Cache-Control"] = "private, max-age=86400"
            return response
        if thumbnail:
            response = HttpResponse(thumbnail_jpeg(file=file), content_type="image/jpeg")
        elif settings.STORAGE_BACKEND == "s3":
            return HttpResponseRedirect(file.url)  # a short-lived signed URL (querystring auth)
        else:
            content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            response = FileResponse(file.open("rb"), content_type=content_type)
    except FileNotFoundError:
        raise Http404("The image file is missing.") from None
    response["Cache-Control"] = "private, max-age=300"
    return response


class SelfieImageView(APIView):
    """A selfie's stored (cleaned) image, or `?size=thumb` for a small JPEG. Owner or staff only."""

    @extend_schema(
        parameters=[OpenApiParameter("size", str, enum=["thumb"], description="`thumb` for a small preview.")],
        responses={(200, "image/jpeg"): OpenApiResponse(description="The image.")},
    )
    def get(self, request: Request, twin_id: int, selfie_id: int) -> HttpResponse:
        selfie = selectors.get_selfie(user=request.user, twin_id=twin_id, selfie_id=selfie_id)
        return _image_response(selfie.image, thumbnail=request.query_params.get("size") == "thumb")


class ReferenceFaceView(APIView):
    """The twin's reference face crop (PNG), made at enrollment, or `?size=small` for the small WebP that
    pages show. Owner or staff only."""

    @extend_schema(
        parameters=[
            OpenApiParameter("size", str, enum=["thumb", "small"], description="`small`: a 192 px WebP."),
        ],
        responses={(200, "image/png"): OpenApiResponse(description="The reference face.")},
    )
    def get(self, request: Request, twin_id: int) -> HttpResponse:
        twin = selectors.get_twin(user=request.user, twin_id=twin_id)
        size = request.query_params.get("size")
        return _image_response(twin.reference_face, thumbnail=size == "thumb", small_face=size == "small")
