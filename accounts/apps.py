from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from accounts import throttles  # noqa: F401  (connects the login-throttle signal receivers)


class TwinsiteAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with our site as `admin.site` (INSTALLED_APPS names this instead)."""

    default = False  # "accounts" itself still means AccountsConfig
    default_site = "accounts.admin_site.TwinsiteAdminSite"
