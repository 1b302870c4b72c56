"""Paginated API lists for plain APIViews (the shape of Styleguide-Example's `api/pagination.py`).

The page class is the one REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"] names (page numbers, PAGE_SIZE),
so every list answers `{"count", "next", "previous", "results"}`. A list view also sets
`pagination_class = DefaultPagination`: drf-spectacular reads that attribute to document the
`page` parameter and the paginated body.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.settings import api_settings
from rest_framework.views import APIView

DefaultPagination: type[BasePagination] = api_settings.DEFAULT_PAGINATION_CLASS


def get_paginated_response(
    *,
    serializer_class: type[BaseSerializer],
    queryset: QuerySet[Any],
    request: Request,
    view: APIView,
    pagination_class: type[BasePagination] = DefaultPagination,
) -> Response:
    paginator = pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    if page is None:  # no page size configured: the whole list, as DRF's ListAPIView answers
        return Response(serializer_class(queryset, many=True, context={"request": request}).data)
    return paginator.get_paginated_response(serializer_class(page, many=True, context={"request": request}).data)
