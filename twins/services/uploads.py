"""Adding and removing a twin's selfies: the cheap checks run in the web process (twins/intake.py),
the files are stored all or nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from twins import intake
from twins.intake import SelfieRefused, Upload
from twins.models import Selfie, Twin
from twinsite.errors import Conflict, ServiceUnavailable, TwinsiteError, ValidationFailed
from twinsite.storage import delete_files, store_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadOutcome:
    name: str
    selfie: Selfie | None = None
    refusal: SelfieRefused | None = None

    @property
    def accepted(self) -> bool:
        return self.selfie is not None


@dataclass(frozen=True)
class UploadResult:
    twin: Twin
    outcomes: list[UploadOutcome]

    @property
    def accepted(self) -> list[UploadOutcome]:
        return [o for o in self.outcomes if o.accepted]

    @property
    def refused(self) -> list[UploadOutcome]:
        return [o for o in self.outcomes if not o.accepted]


class SelfiesRefused(TwinsiteError):
    """Every file of an upload was refused. Carries the per-file reasons for the client."""

    def __init__(self, outcomes: list[UploadOutcome]):
        refusals = [o.refusal for o in outcomes if o.refusal is not None]
        codes = {r.code for r in refusals}
        statuses = {r.status_code for r in refusals}
        # One shared reason gives its own status (415 for a wrong type, 413 for size); a mix is a plain 400.
        code = codes.pop() if len(codes) == 1 else "selfies_refused"
        message = refusals[0].message if len(outcomes) == 1 else f"None of the {len(outcomes)} photos was accepted."
        super().__init__(message, code=code, fields={"files": [f"{o.name}: {o.refusal.message}" for o in outcomes]})
        self.status_code = statuses.pop() if len(statuses) == 1 else 400
        self.outcomes = outcomes

    def as_dict(self) -> dict[str, Any]:
        body = super().as_dict()
        body["results"] = [
            {"name": o.name, "status": "refused", "code": o.refusal.code, "message": o.refusal.message}
            for o in self.outcomes
        ]
        return body


class StorageUnavailable(ServiceUnavailable):
    code = "storage_unavailable"


STORAGE_FAILED = (
    "Your photos could not be stored: the server's storage is full or not writable. "
    "Nothing from this upload was kept; try again later."
)


def _refuse_if_enrolling(twin: Twin) -> None:
    if twin.status == Twin.Status.ENROLLING:
        raise Conflict(
            "This twin is being enrolled right now; wait until it finishes, then add or remove photos.",
            code="enrolling",
        )


def add_selfies(*, twin: Twin, uploads: Sequence[Upload]) -> UploadResult:
    """Check and store uploaded selfies. Per-file outcomes; raises SelfiesRefused if none is accepted.

    Decoding runs before the transaction (it can take a moment per file); the count limit and
    duplicate check run inside it with the twin row locked, so two parallel uploads can't both
    squeeze past TWIN_MAX_PHOTOS. Files written to storage are deleted again if the transaction
    fails, so a database error never leaves orphan files.
    """
    if not uploads:
        raise ValidationFailed(
            "Attach one or more photos as `files` (or a single `file`).",
            code="no_files",
            fields={"files": ["No file was submitted."]},
        )
    _refuse_if_enrolling(twin)

    checked: list[tuple[str, intake.PreparedSelfie | None, SelfieRefused | None]] = []
    for upload in uploads:
        name = intake.clean_name(upload.name)
        try:
            checked.append((name, intake.prepare_selfie(upload=upload), None))
        except SelfieRefused as refusal:
            checked.append((name, None, refusal))

    written: list[str] = []
    storage = Selfie._meta.get_field("image").storage
    try:
        with transaction.atomic():
            locked = Twin.objects.select_for_update().get(pk=twin.pk)
            _refuse_if_enrolling(locked)
            seen = set(Selfie.objects.filter(twin=locked).values_list("sha256", flat=True))
            count = len(seen)
            outcomes: list[UploadOutcome] = []
            for name, prepared, refusal in checked:
                if prepared is None:
                    outcomes.append(UploadOutcome(name=name, refusal=refusal))
                elif prepared.sha256 in seen:
                    outcomes.append(
                        UploadOutcome(
                            name=name,
                            refusal=SelfieRefused("This exact photo is already part of this twin.", code="duplicate"),
                        )
                    )
                elif count >= settings.TWIN_MAX_PHOTOS:
                    outcomes.append(
                        UploadOutcome(
                            name=name,
                            refusal=SelfieRefused(
                                f"A twin holds at most {settings.TWIN_MAX_PHOTOS} photos; "
                                "remove some before adding more.",
                                code="too_many_photos",
                            ),
                        )
                    )
                else:
                    selfie = Selfie(twin=locked, original_name=prepared.original_name, sha256=prepared.sha256)
                    store_file(selfie.image, prepared.content, hint="selfie.jpg", written=written)
                    selfie.width, selfie.height = prepared.width, prepared.height
                    try:
                        with transaction.atomic():  # a savepoint: the rest of the upload survives
                            selfie.save()
                    except IntegrityError:
                        # The same file arriving in a parallel request (where the row lock is a no-op, SQLite).
                        delete_files(storage, [written.pop()])
                        outcomes.append(
                            UploadOutcome(
                                name=name,
                                refusal=SelfieRefused(
                                    "This exact photo is already part of this twin.", code="duplicate"
                                ),
                            )
                        )
                        continue
                    seen.add(prepared.sha256)
                    count += 1
                    outcomes.append(UploadOutcome(name=name, selfie=selfie))
            if not any(o.accepted for o in outcomes):
                raise SelfiesRefused(outcomes)
            Twin.objects.filter(pk=locked.pk).update(photo_count=count, updated_at=timezone.now())
    except OSError as exc:  # storage full or unwritable: all or nothing, with a clear answer
        delete_files(storage, written)
        logger.error("selfie storage failed", extra={"twin": twin.pk, "error": str(exc)[:200]})
        raise StorageUnavailable(STORAGE_FAILED) from exc
    except BaseException:
        delete_files(storage, written)
        raise
    twin.refresh_from_db()
    logger.info("selfies uploaded", extra={"twin": twin.pk, "accepted": len(written), "files": len(uploads)})
    return UploadResult(twin=twin, outcomes=outcomes)


def delete_selfie(*, selfie: Selfie) -> None:
    """Remove one photo (row now, file after commit). The twin keeps its identity until re-enrolled."""
    twin = selfie.twin
    with transaction.atomic():
        locked = Twin.objects.select_for_update().get(pk=twin.pk)
        _refuse_if_enrolling(locked)
        name = selfie.image.name
        selfie.delete()
        remaining = Selfie.objects.filter(twin=locked)
        Twin.objects.filter(pk=locked.pk).update(
            photo_count=remaining.count(),
            accepted_count=remaining.filter(status=Selfie.Status.ACCEPTED).count(),
            rejected_count=remaining.filter(status=Selfie.Status.REJECTED).count(),
            updated_at=timezone.now(),
        )
        storage = Selfie._meta.get_field("image").storage
        transaction.on_commit(lambda: delete_files(storage, [name]))
