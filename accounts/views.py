from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.forms import AccountPasswordChangeForm, DeleteAccountForm, DeleteDataForm, LoginForm, SignupForm
from accounts.selectors import stored_data_of
from accounts.services import delete_account, delete_user_data, get_or_create_api_token, rotate_api_token
from generation.selectors import usage_of
from twinsite.middleware import never_compress


def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome to Twinsite! Start by creating your twin.")
        return redirect("dashboard")
    return render(request, "registration/signup.html", {"form": form})


class LoginView(auth_views.LoginView):
    """Django's login page with login throttling (accounts.throttles): a blocked attempt answers 429."""

    form_class = LoginForm
    redirect_authenticated_user = True

    def form_invalid(self, form: LoginForm) -> HttpResponse:
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "throttled"):
            response.status_code = 429
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change; the form also replaces the API token (accounts.forms._RotatesToken)."""

    form_class = AccountPasswordChangeForm


@never_cache  # the page shows the API token: no browser or proxy may keep a copy
@never_compress  # and it is never gzipped (BREACH, see PageCompressionMiddleware)
@login_required
def settings_page(request: HttpRequest) -> HttpResponse:
    """API token, usage against the quotas, and the ways out: delete my data, delete my account."""
    context = {
        "token": get_or_create_api_token(user=request.user),
        "usage": usage_of(user=request.user),
        "stored": stored_data_of(user=request.user),
        "nav": "settings",
    }
    return render(request, "accounts/settings.html", context)


@login_required
@require_POST
def api_token_rotate(request: HttpRequest) -> HttpResponse:
    rotate_api_token(user=request.user)
    messages.success(request, "A new API token was issued. The old one no longer works.")
    return redirect("settings")


@login_required
def delete_data(request: HttpRequest) -> HttpResponse:
    form = DeleteDataForm(request.POST or None, user=request.user)
    context = {"form": form, "stored": stored_data_of(user=request.user), "nav": "settings"}
    if request.method == "POST":
        if form.is_valid():
            count = delete_user_data(user=request.user)
            messages.success(
                request,
                f"Erased {count} twin{'s' if count != 1 else ''} with every photo, identity "
                "and generated image. Your account and API token stay.",
            )
            return redirect("dashboard")
        return render(request, "accounts/delete_data.html", context, status=400)
    return render(request, "accounts/delete_data.html", context)


@login_required
def account_delete(request: HttpRequest) -> HttpResponse:
    form = DeleteAccountForm(request.POST or None, user=request.user)
    if request.method == "POST":
        if form.is_valid():
            delete_account(user=request.user)
            logout(request)
            messages.success(request, "Your account was deleted, with every twin, photo and generated image.")
            return redirect("login")
        return render(request, "accounts/delete_account.html", {"form": form, "nav": "settings"}, status=400)
    return render(request, "accounts/delete_account.html", {"form": form, "nav": "settings"})
