"""The error types facelens raises.

Every failure a user can cause (a bad file, a huge image, a model without metadata) is a subclass of
:class:`FaceLensError`, so a batch can catch that one type, record the message and go on.
"""

from __future__ import annotations


class FaceLensError(Exception):
    """Base class of every error facelens raises on purpose."""

    code = "facelens_error"


class UnreadableImage(FaceLensError):
    """The input could not be decoded as an image (corrupt, truncated, not an image at all)."""

    code = "unreadable_image"


class ImageTooLarge(FaceLensError):
    """The image has more pixels than the configured limit (protects against decompression bombs).

    Attributes:
        message: What was refused, without ``hint``.
        hint: How the one who sets the limit can raise it ("" if none); shown in brackets after the message.
    """

    code = "image_too_large"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message} ({hint})" if hint else message)
        self.message, self.hint = message, hint


class UnsupportedInput(FaceLensError):
    """The input is of a type or format facelens does not accept."""

    code = "unsupported_input"


class ModelError(FaceLensError):
    """A model file is missing, corrupt, or lacks the metadata facelens needs to run it."""

    code = "model_error"


class DatasetError(FaceLensError):
    """A dataset folder or label file is missing or malformed."""

    code = "dataset_error"


class InvalidSettings(FaceLensError):
    """A setting is out of range or of the wrong kind (a score threshold above 1, a negative face count...)."""

    code = "invalid_settings"
