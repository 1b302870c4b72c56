from django.urls import path

from accounts import api

urlpatterns = [
    path("auth/token/", api.ObtainTokenView.as_view(), name="api-token-obtain"),
    path("auth/token/rotate/", api.RotateTokenView.as_view(), name="api-token-rotate-api"),
]
