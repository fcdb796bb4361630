"""User-facing errors: each names the problem and the fix, so the CLI prints one line."""


class Qwen35Error(Exception):
    """Base class of every error a user can cause (bad config, bad checkpoint, bad input)."""


class UnsupportedConfigError(Qwen35Error):
    """config.json describes a model this package does not implement."""


class CheckpointError(Qwen35Error):
    """The checkpoint's tensors do not match what the config requires."""


class InputError(Qwen35Error):
    """A request (prompt, image, sampling setting) cannot be served as given."""
