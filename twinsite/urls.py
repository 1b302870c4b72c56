from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from twinsite import metrics, views

urlpatterns = [
    path("health", views.health, name="health"),
    path("health/ready", views.health_ready, name="health-ready"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("system-status", views.SystemStatusView.as_view(), name="system-status"),
    path("api/system-status/", views.SystemStatusView.as_view(), name="api-system-status"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script from its own URL, not inline: the CSP allows no
    # inline script (templates/drf_spectacular/swagger_ui.html drops the inline style too).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("accounts.api_urls")),
    path("api/", include("twins.api_urls")),
    path("api/", include("generation.api_urls")),
    path("", include("generation.compat_urls")),
    path("", include("accounts.urls")),
    path("", include("twins.urls")),
    path("", include("generation.urls")),
]

handler404 = "twinsite.views.not_found"
handler500 = "twinsite.views.server_error"
