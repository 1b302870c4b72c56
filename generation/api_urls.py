from django.urls import path

from generation import api

urlpatterns = [
    path("generations/", api.GenerationListView.as_view(), name="api-generations"),
    path("generations/<int:pk>/", api.GenerationDetailView.as_view(), name="api-generation"),
    path("generations/<int:pk>/cancel/", api.GenerationCancelView.as_view(), name="api-generation-cancel"),
    path("generations/<int:pk>/images/<int:number>/", api.GenerationImageView.as_view(), name="api-generation-image"),
    path("generations/<int:pk>/zip/", api.GenerationZipView.as_view(), name="api-generation-zip"),
]
