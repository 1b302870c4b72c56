from django.urls import path

from generation import compat

urlpatterns = [
    path("upload", compat.UploadView.as_view(), name="compat-upload"),
    path("generate", compat.GenerateView.as_view(), name="compat-generate"),
    path("status/<str:job_id>", compat.StatusView.as_view(), name="compat-status"),
    path("jobs", compat.JobsView.as_view(), name="compat-jobs"),
    path("download/<str:job_id>/<str:filename>", compat.DownloadView.as_view(), name="compat-download"),
]
