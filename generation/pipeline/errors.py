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
