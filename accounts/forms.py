from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AdminPasswordChangeForm, AuthenticationForm, PasswordChangeForm, UserCreationForm
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts import throttles
from accounts.models import User
from accounts.services import rotate_api_token
from twinsite.client_address import client_address


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class _ThrottledLogin:
    """Refuses up front while the username/address is throttled (accounts.throttles), with a message saying
    so; the view answers 429 on the "throttled" error. (The throttle backend would refuse too, but the form
    would then claim the password was wrong.)"""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if username:
            wait = throttles.login_wait_seconds(username=username, ip=client_address(self.request))
            if wait:
                raise ValidationError(throttles.wait_message(wait), code="throttled")
        return super().clean()


class LoginForm(_ThrottledLogin, AuthenticationForm):
    """Django's login form, throttled."""


class AdminLoginForm(_ThrottledLogin, AdminAuthenticationForm):
    """The admin's login form, throttled like the login page (accounts.admin_site answers 429)."""


class _RotatesToken:
    """A new password replaces the API token too: a token is as good as the password, so whoever
    learnt the old password (and took the token with it) must lose both. Sessions go by Django's
    own rule (the session hash follows the password)."""

    def save(self, commit: bool = True) -> User:
        if not commit:
            return super().save(commit=False)
        with transaction.atomic():
            user = super().save(commit=True)
            rotate_api_token(user=user)
        return user


class AccountPasswordChangeForm(_RotatesToken, PasswordChangeForm):
    """The account's "change password" page."""


class StaffPasswordChangeForm(_RotatesToken, AdminPasswordChangeForm):
    """Staff setting (or disabling) a user's password in the admin."""


class DeleteAccountForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Deleting is permanent: every twin, photo and generated image goes with the account.",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise ValidationError("That is not your password.", code="wrong_password")
        return password


class DeleteDataForm(DeleteAccountForm):
    """The same password check as deleting the account, for erasing every twin but keeping the account."""

    def __init__(self, *args: Any, user: User, **kwargs: Any):
        super().__init__(*args, user=user, **kwargs)
        self.fields["password"].help_text = "Every twin, selfie, identity and generated image is erased for good."
