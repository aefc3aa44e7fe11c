"""The typed errors of the call layer (the user-facing base, PicacoError, is in picaco.base.errors).

Every provider failure becomes one of these, carrying provider, HTTP status and request id, so that the
client can decide to retry and the user sees a one-line reason. They are raised, never turned into
response text and never cached.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from picaco.base.errors import PicacoError

# What a credential looks like in text a server sends back (a gateway may echo the request's headers):
# a bearer token, OpenAI-style and Google API keys, and key=... in a query string.
_SECRET_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"),
    re.compile(r"(?i)(\b(?:api[_-]?key|x-goog-api-key|key)[\"']?\s*[=:]\s*[\"']?)[A-Za-z0-9._~+/-]{8,}"),
)


def scrub_secrets(text: str, known: Iterable[str | None] = ()) -> str:
    """`text` with every known secret and anything shaped like a credential replaced by ***."""
    for secret in known:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)} ***", text)
    text = _SECRET_PATTERNS[1].sub("sk-***", text)
    text = _SECRET_PATTERNS[2].sub("AIza***", text)
    return _SECRET_PATTERNS[3].sub(lambda m: f"{m.group(1)}***", text)


class ProviderError(PicacoError):
    """A call to a provider failed."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        # the one place every provider message passes: one line, nothing shaped like a credential
        self.message = scrub_secrets(" ".join(str(message).split()))
        self.provider = provider
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(str(self))

    def __str__(self) -> str:
        bits = [f"{self.provider}"]
        if self.status is not None:
            bits.append(f"status {self.status}")
        if self.request_id:
            bits.append(f"request {self.request_id}")
        return f"{type(self).__name__} ({', '.join(bits)}): {self.message}"

    def __reduce__(self):  # keep the fields when a task runner ships the error to another process
        return (
            _rebuild_provider_error,
            (type(self), self.message, self.provider, self.status, self.request_id, self.retry_after),
        )


def _rebuild_provider_error(cls, message, provider, status, request_id, retry_after):
    return cls(message, provider=provider, status=status, request_id=request_id, retry_after=retry_after)


class RateLimited(ProviderError):
    """429: slow down; `retry_after` holds the server's Retry-After in seconds when it gave one."""

    retryable = True


class TransientError(ProviderError):
    """5xx, a timeout, a dropped connection or a malformed/truncated reply body: worth another try."""

    retryable = True


class MalformedReply(TransientError):
    """The server answered 2xx with a body that is not the API's shape."""


class Unreachable(TransientError):
    """The endpoint did not answer at all (connection refused, DNS failure)."""


class AuthError(ProviderError):
    """401/403: a wrong or missing key. Retrying cannot help."""


class BadRequest(ProviderError):
    """400/404/422: the request itself is wrong (unknown model, bad parameter)."""


class ContextTooLong(BadRequest):
    """The prompt does not fit the model's context window."""


class ContentFiltered(ProviderError):
    """The provider refused to answer (safety filter). Not cached: a later run may be answered."""


class RetriesExhausted(ProviderError):
    """Retries ran out (by count or by total time); `last` is the final underlying error."""

    def __init__(self, last: ProviderError, attempts: int, elapsed_s: float) -> None:
        self.last = last
        self.attempts = attempts
        self.elapsed_s = elapsed_s
        super().__init__(
            f"gave up after {attempts} attempts in {elapsed_s:.1f}s; last error: {last}",
            provider=last.provider,
            status=last.status,
            request_id=last.request_id,
        )

    def __reduce__(self):
        return (RetriesExhausted, (self.last, self.attempts, self.elapsed_s))


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Map an HTTP status (and the provider's message) to the typed error. The status is given here only,
    never again in the keyword arguments."""
    lowered = message.lower()
    if status == 429:
        cls: type[ProviderError] = RateLimited
    elif status in (401, 403):
        cls = AuthError
    elif status in (400, 404, 413, 422):
        context_words = ("context length", "context_length", "maximum context", "too long", "token limit")
        cls = ContextTooLong if (status == 413 or any(w in lowered for w in context_words)) else BadRequest
    elif status == 408 or status >= 500:
        cls = TransientError
    else:
        cls = BadRequest
    return cls(message, provider=provider, status=status, request_id=request_id, retry_after=retry_after)
