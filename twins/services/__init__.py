"""Twin use cases. All writes and rules of the twins app live in this package, one module a job:

- `records`: create and rename a twin;
- `uploads`: add and remove selfies (the cheap checks are twins/intake.py);
- `enrollment`: start, run on the `gpu` worker, save (claim and heartbeat: twinsite/jobs.py);
- `verdicts`: what the measured values mean, as pure functions (per photo, per set, the words);
- `retention`: raw selfies deleted after SELFIE_RETENTION_DAYS, and a twin's erasure.

Callers import the use cases from here (`from twins import services`). Thresholds come from
settings (SELFIE_*, TWIN_*); twins/faces.py measures photos. Importing this package loads no
ML library: faces.py imports InsightFace/OpenCV inside the functions the worker calls.
"""

from __future__ import annotations

from twins.services.enrollment import (
    ENROLL_TASK,
    ENROLLMENT,
    MODELS_UNAVAILABLE_MESSAGE,
    STARTABLE_STATUSES,
    EnrollmentResult,
    enroll_twin,
    enrollment_stall_seconds,
    enrollment_stalled,
    enrollment_status_message,
    reap_stale_enrollments,
    start_enrollment,
)
from twins.services.records import NAME_MAX_LENGTH, create_twin, rename_twin
from twins.services.retention import delete_twin, purge_expired_selfies
from twins.services.uploads import (
    STORAGE_FAILED,
    SelfiesRefused,
    StorageUnavailable,
    UploadOutcome,
    UploadResult,
    add_selfies,
    delete_selfie,
)
from twins.services.verdicts import (
    ACCEPTED,
    REFERENCE_FACE_SIZE,
    Verdict,
    enrollment_next_step,
    identity_embedding,
    judge_photo,
    robust_centre,
)

__all__ = [
    "ACCEPTED",
    "ENROLLMENT",
    "ENROLL_TASK",
    "MODELS_UNAVAILABLE_MESSAGE",
    "NAME_MAX_LENGTH",
    "REFERENCE_FACE_SIZE",
    "STARTABLE_STATUSES",
    "STORAGE_FAILED",
    "EnrollmentResult",
    "SelfiesRefused",
    "StorageUnavailable",
    "UploadOutcome",
    "UploadResult",
    "Verdict",
    "add_selfies",
    "create_twin",
    "delete_selfie",
    "delete_twin",
    "enroll_twin",
    "enrollment_next_step",
    "enrollment_stall_seconds",
    "enrollment_stalled",
    "enrollment_status_message",
    "identity_embedding",
    "judge_photo",
    "purge_expired_selfies",
    "reap_stale_enrollments",
    "rename_twin",
    "robust_centre",
    "start_enrollment",
]
