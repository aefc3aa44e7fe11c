"""Errors of the dataset collection layer: each one is a one-line message naming the source, file and field."""

from __future__ import annotations

from picaco.base.errors import ConfigError


class DataError(ConfigError, ValueError):
    """Bad dataset input or configuration. `str(err)` is a single line meant for the user."""

    def __init__(self, message: str) -> None:
        # Collapse any newline a wrapped cause may carry: the CLI prints exactly one line.
        super().__init__(" ".join(str(message).split()))


class MissingColumnError(DataError):
    """A source file or hub split lacks a column the source's mapping needs."""


class EmptySourceError(DataError):
    """A file (or a whole source) holds no data."""


class EncodingError(DataError):
    """A text file is not valid UTF-8."""


class SourceUnavailableError(DataError):
    """A hub id or URL cannot be reached (offline, no network) or a local-only source has no file set."""


class NotEnoughPromptsError(DataError):
    """The composition asks for more prompts than its sources hold after filtering and de-duplication."""
