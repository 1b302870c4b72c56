"""Face adapter: the one module of the twins app that touches InsightFace, onnxruntime and OpenCV.

Those libraries are imported inside functions, so the web process can import this
module (through services) without loading them. The model pack loads once per
process and stays warm. This module *measures* (faces, sharpness, brightness, pose,
embedding); twins/services.py *decides* what the measurements mean for a selfie.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings

from twins import face_pack

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

# Analysis runs on at most this many pixels on the long side: detection works on a 640 px
# canvas anyway, and decoding/aligning a 24 MP phone photo at full size only costs time.
ANALYSIS_MAX_SIDE = 1600
ALIGNED_SIZE = 112  # the ArcFace crop every recognition model of InsightFace expects
CLIP_FACE_SIZE = 224  # the reference face crop FaceID Plus v2 feeds its CLIP image encoder (norm_crop, 224 px)
# Sharpness is the Laplacian variance of the aligned face after scaling its contrast to this
# standard deviation, so a dim or flat-lit face is not mistaken for a blurry one.
SHARPNESS_CONTRAST = 50.0

# Where the five landmarks (right eye, left eye, nose tip, right and left mouth corner, as the
# image shows them) sit on an average frontal face, in millimetres: x to the image's right, y up,
# z towards the camera, origin at the nose tip. The depths are calibrated on LFW photos so that
# three-quarter views read as roughly 30-40 degrees of yaw.
_FACE_MODEL_3D = np.array(
    [[-31.5, 38.0, -45.0], [31.5, 38.0, -45.0], [0.0, 0.0, 0.0], [-26.0, -35.0, -38.0], [26.0, -35.0, -38.0]]
)


class FaceModelUnavailable(RuntimeError):
    """The configured model pack cannot be loaded (missing files, no download possible...)."""


@dataclass(frozen=True)
class FaceModelInfo:
    pack: str
    root: str
    dim: int
    providers: tuple[str, ...]


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the photo's pixels, clipped to the frame
    score: float
    landmarks: np.ndarray  # (5, 2) in the photo's pixels

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def size(self) -> float:
        """The short side of the face box: what 'face too small' is judged on."""
        return min(self.width, self.height)


@dataclass(frozen=True)
class PhotoAnalysis:
    width: int
    height: int
    faces: tuple[DetectedFace, ...]  # largest first
    sharpness: float | None = None
    brightness: float | None = None
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    embedding: np.ndarray | None = None  # float32, L2-normalised

    @property
    def face(self) -> DetectedFace | None:
        return self.faces[0] if self.faces else None


@dataclass
class _Models:
    info: FaceModelInfo
    detector: Any
    recognizer: Any


_models: dict[tuple[str, str, int, float], _Models] = {}
_models_lock = threading.Lock()


def _providers() -> tuple[list[str], int]:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], 0
    return ["CPUExecutionProvider"], -1


def _recognizer_output_dim(recognizer: Any) -> int:
    # Read it from the model: the test pack gives 128-d, buffalo_l 512-d.
    last = recognizer.output_shape[-1] if recognizer.output_shape else None
    if isinstance(last, int) and last > 0:
        return last
    probe = np.zeros((ALIGNED_SIZE, ALIGNED_SIZE, 3), dtype=np.uint8)
    return int(recognizer.get_feat(probe).size)


def _configured_key() -> tuple[str, str, int, float]:
    return (
        str(settings.INSIGHTFACE_ROOT),
        face_pack.configured_pack(),
        settings.INSIGHTFACE_DET_SIZE,
        settings.INSIGHTFACE_DET_THRESH,
    )


def _load() -> _Models:
    key = _configured_key()
    with _models_lock:
        cached = _models.get(key)
        if cached is not None:
            return cached
        root, pack, det_size, det_thresh = key
        pack_dir = Path(root) / "models" / pack
        if not any(pack_dir.glob("*.onnx")):
            # InsightFace would try to download the pack here, in the middle of a task; weights are
            # provisioned ahead of time instead (see README), so say exactly what is missing.
            raise FaceModelUnavailable(
                f"Face model pack {pack!r} not found: no .onnx files in {pack_dir}. Put the pack there "
                "(INSIGHTFACE_ROOT/models/INSIGHTFACE_PACK) before starting the worker."
            )
        providers, ctx_id = _providers()
        try:
            from insightface.app import FaceAnalysis

            # FaceAnalysis prints every model it finds; keep the worker's log readable.
            with contextlib.redirect_stdout(io.StringIO()):
                app = FaceAnalysis(
                    name=pack, root=root, providers=providers, allowed_modules=["detection", "recognition"]
                )
                app.prepare(ctx_id=ctx_id, det_thresh=det_thresh, det_size=(det_size, det_size))
        except Exception as exc:
            raise FaceModelUnavailable(
                f"Face model pack {pack!r} could not be loaded from {root} (INSIGHTFACE_ROOT/INSIGHTFACE_PACK): "
                f"{exc.__class__.__name__}: {exc}"
            ) from exc
        recognizer = app.models.get("recognition")
        if recognizer is None:
            raise FaceModelUnavailable(f"Face model pack {pack!r} in {root} has no recognition model.")
        info = FaceModelInfo(pack=pack, root=root, dim=_recognizer_output_dim(recognizer), providers=tuple(providers))
        logger.info("face models loaded", extra={"pack": pack, "dim": info.dim, "providers": providers})
        loaded = _Models(info=info, detector=app.det_model, recognizer=recognizer)
        _models[key] = loaded
        return loaded


def model_info() -> FaceModelInfo:
    """Load the configured pack (once per process) and say what it is."""
    return _load().info


def loaded_model_info() -> FaceModelInfo | None:
    """The configured pack, if this process has loaded it (for the worker's heartbeat). Loads nothing."""
    loaded = _models.get(_configured_key())
    return loaded.info if loaded is not None else None


def warm_up() -> FaceModelInfo:
    """Load the models and run them once, so the first real photo doesn't pay for session start-up."""
    models = _load()
    blank = np.zeros((ALIGNED_SIZE * 2, ALIGNED_SIZE * 2, 3), dtype=np.uint8)
    models.detector.detect(blank, max_num=0, metric="default")
    models.recognizer.get_feat(blank[:ALIGNED_SIZE, :ALIGNED_SIZE])
    return models.info


def _to_bgr(image: Image.Image, max_side: int | None) -> tuple[np.ndarray, float]:
    """RGB PIL image -> contiguous BGR array (OpenCV/InsightFace order) and the scale applied."""
    from PIL import Image as PILImage

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    scale = 1.0
    if max_side and max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), PILImage.BILINEAR)
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1]), scale


def _detect(models: _Models, bgr: np.ndarray, scale: float) -> list[tuple[DetectedFace, np.ndarray]]:
    """All faces, largest first, as (face in original pixels, landmarks in `bgr` pixels)."""
    bboxes, landmarks = models.detector.detect(bgr, max_num=0, metric="default")
    if bboxes.shape[0] and landmarks is None:
        raise FaceModelUnavailable(
            f"The detector of pack {models.info.pack!r} gives no facial landmarks; alignment needs a 5-point model."
        )
    height, width = bgr.shape[:2]
    found = []
    for i in range(bboxes.shape[0]):
        x1, y1, x2, y2, score = (float(v) for v in bboxes[i, :5])
        # Clip to the frame: a face cut by the edge only counts for the part that is visible.
        x1, x2 = max(0.0, x1), min(float(width), x2)
        y1, y2 = max(0.0, y1), min(float(height), y2)
        kps = np.asarray(landmarks[i], dtype=np.float32)
        face = DetectedFace(box=(x1 / scale, y1 / scale, x2 / scale, y2 / scale), score=score, landmarks=kps / scale)
        found.append((face, kps))
    found.sort(key=lambda pair: pair[0].area, reverse=True)
    return found


def _align(bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
    from insightface.utils import face_align

    with warnings.catch_warnings():
        # scikit-image deprecates the API InsightFace 0.7 calls; nothing for us to act on.
        warnings.simplefilter("ignore", FutureWarning)
        return face_align.norm_crop(bgr, landmark=kps, image_size=ALIGNED_SIZE)


def _embed(models: _Models, aligned: np.ndarray) -> np.ndarray:
    vector = np.asarray(models.recognizer.get_feat(aligned), dtype=np.float32).ravel()
    return normalize(vector)


def sharpness_of(aligned_bgr: np.ndarray) -> float:
    """Variance of the Laplacian of the aligned face, contrast-normalised.

    Measured on the aligned crop (not the whole photo) so a sharp background cannot hide a
    blurred face; contrast is normalised (floor at std 5 so noise on a flat crop isn't
    amplified) so light level doesn't decide.
    """
    import cv2

    grey = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY).astype(np.float64)
    grey *= SHARPNESS_CONTRAST / max(float(grey.std()), 5.0)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def brightness_of(aligned_bgr: np.ndarray) -> float:
    """Mean grey level (0-255) of the face's centre: eyes, nose and mouth, not background or hair."""
    import cv2

    grey = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    return float(grey[24:104, 20:92].mean())


def estimate_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the 5 landmarks, by fitting the average 3D face.

    A weak-perspective (scaled orthographic) fit: the least-squares 2x3 map from the centred
    3D model to the centred landmarks, made orthonormal, is the head's rotation. Good to a few
    degrees near frontal; enough to tell a usable selfie from a profile.
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2).copy()
    points[:, 1] = -points[:, 1]  # image y grows downwards, the model's upwards
    model = _FACE_MODEL_3D - _FACE_MODEL_3D.mean(axis=0)
    points -= points.mean(axis=0)
    affine = np.linalg.lstsq(model, points, rcond=None)[0].T  # (2, 3)
    row1 = affine[0] / (np.linalg.norm(affine[0]) + 1e-12)
    row2 = affine[1] - (affine[1] @ row1) * row1
    row2 /= np.linalg.norm(row2) + 1e-12
    rotation = np.stack([row1, row2, np.cross(row1, row2)])
    yaw = np.degrees(np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2]))
    roll = np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))
    return float(yaw), float(pitch), float(roll)


def analyze_photo(image: Image.Image, *, embed: bool = True) -> PhotoAnalysis:
    """Detect every face; measure the largest one (quality, pose) and embed it."""
    models = _load()
    bgr, scale = _to_bgr(image, ANALYSIS_MAX_SIDE)
    found = _detect(models, bgr, scale)
    faces = tuple(face for face, _ in found)
    if not found:
        return PhotoAnalysis(width=image.width, height=image.height, faces=faces)
    main_face, kps = found[0]
    aligned = _align(bgr, kps)
    yaw, pitch, roll = estimate_pose(main_face.landmarks)
    return PhotoAnalysis(
        width=image.width,
        height=image.height,
        faces=faces,
        sharpness=sharpness_of(aligned),
        brightness=brightness_of(aligned),
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        embedding=_embed(models, aligned) if embed else None,
    )


def largest_face_embedding(image: Image.Image) -> tuple[np.ndarray | None, int]:
    """The largest face's embedding (None when there is no face) and how many faces were found."""
    models = _load()
    bgr, scale = _to_bgr(image, ANALYSIS_MAX_SIDE)
    found = _detect(models, bgr, scale)
    if not found:
        return None, 0
    return _embed(models, _align(bgr, found[0][1])), len(found)


def reference_crop(image: Image.Image, face: DetectedFace) -> Image.Image:
    """The twin's reference face for the CLIP image encoder, cut the way FaceID Plus v2 was trained.

    h94/IP-Adapter-FaceID's demo: `face_align.norm_crop(image, landmark=faces[0].kps, image_size=224)`:
    the ArcFace 5-point alignment (eyes, nose, mouth corners) scaled to 224 px, on the full-resolution
    photo with the face's landmarks in its pixels. The crop stays RGB (the CLIP processor's order).
    """
    rgb = np.ascontiguousarray(np.asarray(image if image.mode == "RGB" else image.convert("RGB")))
    from insightface.utils import face_align
    from PIL import Image as PILImage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scikit-image deprecation inside InsightFace 0.7
        crop = face_align.norm_crop(
            rgb, landmark=np.asarray(face.landmarks, dtype=np.float32), image_size=CLIP_FACE_SIZE
        )
    return PILImage.fromarray(crop)


def normalize(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def embedding_to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").ravel().tobytes()


def embedding_from_bytes(data: bytes | memoryview, dim: int | None = None) -> np.ndarray:
    vector = np.frombuffer(bytes(data), dtype="<f4").astype(np.float32)
    if dim is not None and vector.size != dim:
        raise ValueError(f"stored embedding has {vector.size} values, expected {dim}")
    return vector
