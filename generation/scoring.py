"""Identity score of a generated image: does it still look like the twin?

Uses the same face adapter as enrollment (twins/faces.py), so the score is a cosine in the
same embedding space as the twin's identity: the largest face in the image against the
twin's embedding. ML libraries load lazily inside the adapter, on the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

NO_FACE_NOTE = "no face found in the image"


@dataclass(frozen=True)
class IdentityScore:
    score: float | None  # cosine in [-1, 1]; None when it cannot be measured (see note)
    note: str  # "" for a plain measurement, else why there is no score or what it was measured on


def score_identity(*, image: Image.Image, twin_embedding: np.ndarray) -> IdentityScore:
    from twins import faces

    embedding, face_count = faces.largest_face_embedding(image)
    if embedding is None:
        return IdentityScore(score=None, note=NO_FACE_NOTE)
    twin = np.asarray(twin_embedding, dtype=np.float32).ravel()
    if twin.size != embedding.size:
        # A twin enrolled with another face model: comparing would be meaningless.
        return IdentityScore(
            score=None,
            note=f"the twin's embedding has {twin.size} values but the face model gives {embedding.size}; "
            "enroll the twin again",
        )
    norm = float(np.linalg.norm(twin))
    if norm == 0:
        return IdentityScore(score=None, note="the twin's embedding is empty; enroll the twin again")
    score = float(np.clip(embedding @ (twin / norm), -1.0, 1.0))
    note = "" if face_count == 1 else f"largest of {face_count} faces"
    return IdentityScore(score=round(score, 4), note=note)
