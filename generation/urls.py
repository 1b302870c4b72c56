from django.urls import path

from generation import views

urlpatterns = [
    path("twins/<int:twin_id>/generate/", views.generate, name="generation-submit"),
    path("twins/<int:twin_id>/generate/new/", views.new_generation, name="generation-new"),
    path("generations/", views.history, name="generation-history"),
    path("generations/<int:pk>/", views.detail, name="generation-detail"),
    path("generations/<int:pk>/cancel/", views.cancel, name="generation-cancel"),
    path("generations/<int:pk>/delete/", views.delete, name="generation-delete"),
    path("generations/<int:pk>/images/<int:number>/", views.image, name="generation-image"),
    path("generations/<int:pk>/images/<int:number>/delete/", views.delete_image, name="generation-image-delete"),
    path("generations/<int:pk>/zip/", views.download_zip, name="generation-zip"),
]
