from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.forms import StaffPasswordChangeForm
from accounts.models import User
from accounts.services import delete_account


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "is_staff", "is_active", "date_joined", "last_login")
    list_filter = ("is_staff", "is_superuser", "is_active")
    change_password_form = StaffPasswordChangeForm  # a new password replaces the API token

    # Django's own delete would drop the rows and leave every photo in storage.
    def delete_model(self, request: HttpRequest, obj: User) -> None:
        delete_account(user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            delete_account(user=user)
