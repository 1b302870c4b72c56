from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from twins.selectors import twins_for_owner


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "twins/dashboard.html", {"twins": twins_for_owner(owner=request.user), "nav": "twins"})
