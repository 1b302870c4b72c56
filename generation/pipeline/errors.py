"""The generation adapter's errors: each message is fit to show to the user or support staff."""

from __future__ import annotations


class GenerationCancelled(Exception):
    """Raised by an on_step callback to stop a generation; propagates out of generate_images."""


class PipelineError(RuntimeError):
    """A generation failure with a message fit to show to the user or support staff."""


class ModelWeightsMissing(PipelineError):
    pass


class EmbeddingMismatch(PipelineError):
    pass


class MissingReferenceFace(PipelineError):
    """The twin has no reference face for the CLIP encoder: FaceID Plus would quietly become plain FaceID."""


MISSING_REFERENCE_FACE_MESSAGE = (
    "This twin has no reference face (it was enrolled before reference faces were kept, or the file is gone), "
    "so its photos would lose the face structure. Enroll the twin again, then generate."
)
