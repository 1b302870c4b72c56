from __future__ import annotations

import os
import secrets
import sys

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first admin user if none exists (ADMIN_USERNAME / ADMIN_PASSWORD, a prompt, or a printed one)."

    def handle(self, *args: object, **options: object) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = os.environ.get("ADMIN_USERNAME", "admin")
        password = os.environ.get("ADMIN_PASSWORD")
        if not password and sys.stdin.isatty():
            self.stdout.write("No admin user exists yet: create one for the support-staff admin (/admin/).")
            call_command("createsuperuser", username=username, email="", interactive=True)
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin user {username!r} with password {password!r}. Change it at /account/password/."
                )
            )
        else:
            self.stdout.write(f"Created admin user {username!r} from ADMIN_PASSWORD.")
