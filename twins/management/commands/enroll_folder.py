"""Enroll a folder of photos as a twin, in this process (no queue, no worker), and print every verdict.

    manage.py enroll_folder alice "Me, 2026" ~/Pictures/selfies

Reuses the user's twin of that name if there is one (photos already in it are reported as
duplicates and kept), else creates it.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from twins import services
from twins.models import Selfie, Twin
from twinsite.errors import TwinsiteError

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".heic", ".heif"}


class Command(BaseCommand):
    help = "Upload every photo in a folder to a user's twin and enroll it synchronously, printing each verdict."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("twin_name")
        parser.add_argument("directory", type=Path)
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bars.")

    def handle(self, *args: object, **options: object) -> None:
        username, name, directory = options["username"], options["twin_name"], options["directory"]
        quiet = bool(options["no_progress"])
        owner = get_user_model().objects.filter(username=username).first()
        if owner is None:
            raise CommandError(f"No user named {username!r}.")
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a folder.")
        # By name, case-insensitively, so a folder of DSC_0001.JPG counts; content decides the real type.
        paths = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
        if not paths:
            raise CommandError(f"No photos ({', '.join(sorted(PHOTO_SUFFIXES))}) in {directory}.")

        twin = Twin.objects.filter(owner=owner, name=name).order_by("-created_at").first()
        if twin is None:
            twin = services.create_twin(owner=owner, name=name)
            self.stdout.write(f"Created twin “{twin.name}” (id {twin.pk}) for {username}.")
        else:
            self.stdout.write(f"Adding to twin “{twin.name}” (id {twin.pk}) of {username}.")

        refused = 0
        for path in tqdm(paths, desc="Uploading", unit="photo", disable=quiet):
            with path.open("rb") as fh:
                try:
                    result = services.add_selfies(twin=twin, uploads=[File(fh, name=path.name)])
                except services.SelfiesRefused as exc:
                    outcome = exc.outcomes[0]
                    refused += 1
                    tqdm.write(f"  refused  {path.name}: {outcome.refusal.message}", file=self.stdout)
                    continue
                except TwinsiteError as exc:
                    raise CommandError(exc.message) from exc
            twin = result.twin
        if refused:
            self.stdout.write(f"{refused} file(s) refused at upload.")

        try:
            twin = services.start_enrollment(twin=twin, enqueue=False)
        except TwinsiteError as exc:
            raise CommandError(exc.message) from exc
        with tqdm(total=twin.progress_total, desc="Enrolling", unit="photo", disable=quiet) as bar:

            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            outcome = services.enroll_twin(twin=twin, on_progress=advance)

        self.stdout.write("")
        for selfie in Selfie.objects.filter(twin_id=twin.pk).order_by("created_at", "id"):
            similarity = f"{selfie.similarity:+.3f}" if selfie.similarity is not None else "   —  "
            verdict = "accepted" if selfie.status == Selfie.Status.ACCEPTED else f"refused ({selfie.reason})"
            line = f"  {selfie.original_name:<32} {similarity}  {verdict}"
            if selfie.message:
                line += f": {selfie.message}"
            self.stdout.write(line)
        self.stdout.write("")
        style = self.style.SUCCESS if outcome.status == Twin.Status.READY else self.style.ERROR
        self.stdout.write(style(f"Twin {twin.pk} is {outcome.status}. {outcome.message}"))
        if outcome.status != Twin.Status.READY:
            raise CommandError("Enrollment did not produce a ready twin.")
