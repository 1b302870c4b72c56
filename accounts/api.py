from __future__ import annotations

from django.contrib.auth import authenticate
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import Throttled
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import throttles
from accounts.serializers import RotatedTokenSerializer, TokenRequestSerializer, TokenSerializer
from accounts.services import get_or_create_api_token, rotate_api_token
from twinsite.client_address import client_address
from twinsite.errors import TwinsiteError
from twinsite.throttling import ScopedRateThrottle


class InvalidCredentials(TwinsiteError):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid_credentials"


# Both answers carry the API token: Cache-Control no-store, so no cache keeps a copy.
@method_decorator(never_cache, name="dispatch")
class ObtainTokenView(APIView):
    """Exchange a username and password for the user's API token."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"

    @extend_schema(request=TokenRequestSerializer, responses=TokenSerializer)
    def post(self, request: Request) -> Response:
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username, ip = serializer.validated_data["username"], client_address(request)
        wait = throttles.login_wait_seconds(username=username, ip=ip)
        if wait:
            raise Throttled(wait=wait, detail=throttles.wait_message(wait))
        user = authenticate(request, **serializer.validated_data)
        if user is None:
            raise InvalidCredentials("Unable to log in with the username and password given.")
        throttles.clear_login_failures(username=username, ip=ip)
        return Response(TokenSerializer({"token": get_or_create_api_token(user=user).key}).data)


@method_decorator(never_cache, name="dispatch")
class RotateTokenView(APIView):
    """Revoke the current token and issue a new one."""

    @extend_schema(request=None, responses=RotatedTokenSerializer)
    def post(self, request: Request) -> Response:
        return Response(RotatedTokenSerializer({"token": rotate_api_token(user=request.user).key}).data)
