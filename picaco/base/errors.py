"""The errors a user sees: each one line naming the file, field or value, with the way out. The CLI
prints them as `error: ...` (exit 2). Provider failures (picaco/llm/errors.py) derive from PicacoError."""

from __future__ import annotations


class PicacoError(Exception):
    """Base of every error picaco raises on purpose."""


class ConfigError(PicacoError):
    """Bad user input: an unknown provider or model string, a missing API key, a bad option."""


class CacheError(PicacoError):
    """The call cache cannot be opened, read as a whole or written (damaged database, a file where the
    directory should be, disk full). The message names the path."""


class RunStateError(PicacoError):
    """A file of the run store is damaged, or the store does not match the run. One line, with the way out."""


class FileWriteError(PicacoError, OSError):
    """A file could not be written (disk full, permissions, a file where a folder should be). Still an
    OSError for callers that catch those; its message is the one line a user sees."""

    def __str__(self) -> str:  # without OSError's "[Errno 28]" prefix: the message says it in words
        return self.strerror or super().__str__()
