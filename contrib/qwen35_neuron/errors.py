"""User-facing errors: each names the problem and the fix, so the CLI prints one line."""


class Qwen35Error(Exception):
    """Base class of every error a user can cause (bad config, bad checkpoint, bad input)."""


class UnsupportedConfigError(Qwen35Error):
    """config.json describes a model this package does not implement."""


class CheckpointError(Qwen35Error):
    """The checkpoint's files or tensors are unreadable, corrupt, or do not match the config.

    ``model_dir`` is the directory as the user gave it, so a one-line summary can point at the
    full report (``qwen35-neuron inspect --model DIR``)."""

    def __init__(self, message: str, model_dir: str | None = None) -> None:
        super().__init__(message)
        self.model_dir = model_dir


class InputError(Qwen35Error):
    """A request (prompt, image, sampling setting) cannot be served as given."""
