"""The set-wide rules of enrollment on constructed embeddings: the robust centre and the outlier
removal (median - 3 MAD) that decides which accepted photos shape the twin's identity."""

from __future__ import annotations

import numpy as np
import pytest

from twins.services import identity_embedding, robust_centre

MAD_TO_SIGMA = 1.4826  # the MAD of normal data times this is its standard deviation


def one_hot_rows(count: int) -> np.ndarray:
    """Photo i points along axis i: the identity's non-zero axes say exactly which photos it averaged."""
    return np.eye(count, dtype=np.float32)


def used_photos(vector: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(vector > 1e-6)]


def cutoff(similarities: list[float]) -> float:
    values = np.asarray(similarities)
    median = float(np.median(values))
    return median - 3 * MAD_TO_SIGMA * float(np.median(np.abs(values - median)))


def test_a_far_outlier_is_left_out_of_the_identity():
    # median 0.80, MAD 0.02: the cut-off is 0.711
    similarities = [0.80, 0.82, 0.78, 0.81, 0.79, 0.80, 0.83, 0.77, 0.40]
    vector, used = identity_embedding(one_hot_rows(9), np.array(similarities, dtype=np.float32))
    assert used == 8
    assert used_photos(vector) == list(range(8))
    assert np.linalg.norm(vector) == pytest.approx(1.0)
    assert vector[:8] == pytest.approx(np.full(8, 1 / np.sqrt(8)))  # the plain mean of the others


def test_values_just_inside_the_cut_off_are_kept_and_just_outside_dropped():
    base = [0.78, 0.79, 0.79, 0.80, 0.80, 0.80, 0.81, 0.81, 0.82]
    line = cutoff([*base, 0.0, 0.0])  # two low values below the median: where they fall doesn't move it
    assert line == pytest.approx(0.80 - 3 * MAD_TO_SIGMA * 0.01)
    similarities = [*base, line + 0.003, line - 0.003]
    vector, used = identity_embedding(one_hot_rows(11), np.array(similarities, dtype=np.float32))
    assert used == 10
    assert used_photos(vector) == list(range(10))  # the one at line + 0.003 is in, line - 0.003 out


def test_the_spread_of_the_set_decides_not_a_fixed_similarity():
    # The same similarity, 0.70, against the same median, 0.80: an outlier in a tight set
    # (MAD 0.01, cut-off 0.756), ordinary in a loose one (MAD 0.05, cut-off 0.578).
    tight = [0.79, 0.80, 0.81, 0.80, 0.79, 0.81, 0.80, 0.70]
    loose = [0.75, 0.80, 0.85, 0.80, 0.75, 0.85, 0.80, 0.70]
    assert np.median(tight) == np.median(loose) == pytest.approx(0.80)
    _, used_tight = identity_embedding(one_hot_rows(8), np.array(tight, dtype=np.float32))
    loose_vector, used_loose = identity_embedding(one_hot_rows(8), np.array(loose, dtype=np.float32))
    assert used_tight == 7
    assert used_loose == 8 and used_photos(loose_vector) == list(range(8))
    # And a lower value survives where a higher one did not: no single threshold gives both.
    looser = [0.55, 0.65, 0.75, 0.65, 0.55, 0.75, 0.65, 0.45]  # median 0.65, MAD 0.10: cut-off 0.205
    _, used_looser = identity_embedding(one_hot_rows(8), np.array(looser, dtype=np.float32))
    assert used_looser == 8  # 0.45 kept here, 0.70 dropped above


def test_a_set_without_spread_keeps_every_photo():
    vector, used = identity_embedding(one_hot_rows(5), np.full(5, 0.9, dtype=np.float32))
    assert used == 5 and used_photos(vector) == list(range(5))


def _photo_embeddings(cosines: list[float]) -> np.ndarray:
    """Unit embeddings at the given cosine to one identity (axis 0), each off it in its own direction."""
    rows = np.zeros((len(cosines), len(cosines) + 1), dtype=np.float32)
    for i, cos in enumerate(cosines):
        rows[i, 0] = cos
        rows[i, i + 1] = np.sqrt(1 - cos**2)
    return rows


def test_an_accepted_but_atypical_photo_does_not_shape_the_identity():
    """The enrollment flow: robust_centre's cosines feed the outlier removal. A photo far enough
    from the centre to stand out, though still the same person, stays accepted and is left out."""
    cosines = [0.80, 0.82, 0.78, 0.81, 0.79, 0.80, 0.83, 0.77, 0.80, 0.81, 0.50]
    embeddings = _photo_embeddings(cosines)
    centre, similarities = robust_centre(embeddings, threshold=0.35)
    assert centre @ np.eye(embeddings.shape[1])[0] > 0.9  # the centre is the shared identity
    assert similarities.min() == similarities[-1] > 0.35  # the atypical photo passes as the same person

    vector, used = identity_embedding(embeddings, similarities)
    assert used == len(cosines) - 1
    assert vector[len(cosines)] == 0.0  # the atypical photo's own direction is not in the identity
    assert all(vector[i + 1] > 0 for i in range(len(cosines) - 1))


def test_a_minority_of_another_person_does_not_move_the_centre():
    person, other = np.eye(3, dtype=np.float32)[0], np.eye(3, dtype=np.float32)[1]
    rng = np.random.default_rng(0)

    def near(direction: np.ndarray, count: int) -> np.ndarray:
        rows = direction + 0.1 * rng.standard_normal((count, 3)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    embeddings = np.concatenate([near(person, 8), near(other, 5)])
    centre, similarities = robust_centre(embeddings, threshold=0.35)
    assert centre @ person > 0.95
    assert (similarities[:8] > 0.9).all() and (similarities[8:] < 0.35).all()
