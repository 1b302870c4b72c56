from django.urls import path

from twins import api

urlpatterns = [
    path("twins/", api.TwinListView.as_view(), name="api-twin-list"),
    path("twins/<int:twin_id>/", api.TwinDetailView.as_view(), name="api-twin-detail"),
    path("twins/<int:twin_id>/selfies/", api.TwinSelfiesView.as_view(), name="api-twin-selfies"),
    path(
        "twins/<int:twin_id>/selfies/<int:selfie_id>/",
        api.TwinSelfieDetailView.as_view(),
        name="api-twin-selfie-detail",
    ),
    path("twins/<int:twin_id>/enroll/", api.TwinEnrollView.as_view(), name="api-twin-enroll"),
]
