from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("account/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("settings/", views.settings_page, name="settings"),
    path("account/token/", views.settings_page, name="api-token"),  # the page's first address, kept for old links
    path("account/delete-data/", views.delete_data, name="account-delete-data"),
    path("account/token/rotate/", views.api_token_rotate, name="api-token-rotate"),
    path("account/delete/", views.account_delete, name="account-delete"),
]
