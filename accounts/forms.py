from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError

from accounts import throttles
from accounts.models import User


class SignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class LoginForm(AuthenticationForm):
    """Django's login form, refusing up front while the username/address is throttled (accounts.throttles)."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if username:
            wait = throttles.login_wait_seconds(username=username, ip=throttles.client_ip(self.request))
            if wait:
                raise ValidationError(throttles.wait_message(wait), code="throttled")
        return super().clean()


class DeleteAccountForm(forms.Form):
    password = forms.CharField(
        label="Your password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
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
