from django.urls import path

from twins import api, views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("twins/new/", views.twin_create, name="twin-create"),
    path("twins/<int:twin_id>/", views.twin_detail, name="twin-detail"),
    path("twins/<int:twin_id>/rename/", views.twin_rename, name="twin-rename"),
    path("twins/<int:twin_id>/upload/", views.twin_upload, name="twin-upload"),
    path("twins/<int:twin_id>/enroll/", views.twin_enroll, name="twin-enroll"),
    path("twins/<int:twin_id>/delete/", views.twin_delete, name="twin-delete"),
    path("twins/<int:twin_id>/selfies/<int:selfie_id>/delete/", views.selfie_delete, name="twin-selfie-delete"),
    # Private images: authenticated (session or token), owner or staff only.
    path("twins/<int:twin_id>/selfies/<int:selfie_id>/image", api.SelfieImageView.as_view(), name="twin-selfie-image"),
    path("twins/<int:twin_id>/reference-face", api.ReferenceFaceView.as_view(), name="twin-reference-face"),
]
