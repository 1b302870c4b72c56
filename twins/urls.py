from django.urls import path

from twins import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
]
