"""Identity scoring with the real face models and photos: the enrolled person scores above others."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from generation.scoring import NO_FACE_NOTE, IdentityScore, score_identity
from twins import faces


def _open(path) -> Image.Image:
    return Image.open(path).convert("RGB")


@pytest.fixture
def bush_identity(face_models, faces_dir) -> np.ndarray:
    """A twin embedding made the way enrollment makes it: the normalised mean of 12 photos."""
    paths = sorted((faces_dir / "george_w_bush").glob("*.jpg"))[:12]
    vectors = np.stack([faces.analyze_photo(_open(p)).embedding for p in paths])
    return faces.normalize(vectors.mean(axis=0))


def test_the_enrolled_person_scores_clearly_above_another(bush_identity, faces_dir):
    same = [
        score_identity(image=_open(p), twin_embedding=bush_identity)
        for p in sorted((faces_dir / "george_w_bush").glob("*.jpg"))[12:]
    ]
    other = [
        score_identity(image=_open(p), twin_embedding=bush_identity)
        for p in sorted((faces_dir / "tony_blair").glob("*.jpg"))[:8]
    ]
    assert all(isinstance(s, IdentityScore) and s.score is not None for s in same + other)
    same_scores, other_scores = [s.score for s in same], [s.score for s in other]
    assert min(same_scores) > 0.5
    assert max(other_scores) < 0.35
    assert min(same_scores) - max(other_scores) > 0.3


def test_no_face_gives_no_score(bush_identity, faces_dir):
    result = score_identity(image=_open(faces_dir / "_hard" / "noface_coffee.png"), twin_embedding=bush_identity)
    assert result == IdentityScore(score=None, note=NO_FACE_NOTE)


def test_the_largest_face_is_scored_and_the_note_says_so(bush_identity, faces_dir):
    result = score_identity(image=_open(faces_dir / "_hard" / "group_couple.jpg"), twin_embedding=bush_identity)
    assert result.score is not None and result.score < 0.35
    assert result.note == "largest of 2 faces"


def test_an_embedding_from_another_face_model_is_not_compared(bush_identity, faces_dir):
    image = _open(sorted((faces_dir / "george_w_bush").glob("*.jpg"))[0])
    result = score_identity(image=image, twin_embedding=np.ones(512, dtype=np.float32))
    assert result.score is None and "512" in result.note and "enroll the twin again" in result.note


def test_accepts_a_float32_vector_read_from_the_twin_row(bush_identity, faces_dir):
    stored = faces.embedding_from_bytes(faces.embedding_to_bytes(bush_identity), 128)
    image = _open(sorted((faces_dir / "george_w_bush").glob("*.jpg"))[15])
    assert score_identity(image=image, twin_embedding=stored).score > 0.5
