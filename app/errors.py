"""Domain errors, grouped by the reaction a client needs; the API maps each group to a status."""

from __future__ import annotations


class CryptoFunkError(Exception):
    """Base error: ``message`` becomes ``error``; ``context`` adds keys such as ``order_id``."""

    def __init__(
        self,
        message: str,
        *,
        details: str | None = None,
        field: str | None = None,
        **context,
    ):
        super().__init__(message)
        self.message = message
        self.details = details
        self.field = field
        self.context = context

    def to_dict(self) -> dict:
        body: dict = {"error": self.message}
        if self.details is not None:
            body["details"] = self.details
        if self.field is not None:
            body["field"] = self.field
        body.update({key: str(value) for key, value in self.context.items()})
        return body


class InvalidInput(CryptoFunkError):
    """The request cannot be honoured as sent (400)."""


class InvalidTransition(InvalidInput):
    """The resource exists but is in a state that forbids this action (400)."""


class NotFound(CryptoFunkError):
    """No such resource (404)."""


class Conflict(CryptoFunkError):
    """The action collides with an existing resource, e.g. an already active session (409)."""


class Unavailable(CryptoFunkError):
    """A dependency such as the database cannot be reached, or the system is overloaded (503).

    ``retry_after`` (seconds) becomes the ``Retry-After`` header.
    """

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Unauthenticated(CryptoFunkError):
    """No credential, or one that is not (or no longer) valid (401)."""


class Forbidden(CryptoFunkError):
    """A valid credential whose role may not do this (403)."""


class TooManyRequests(CryptoFunkError):
    """A rate limit is used up (429); ``retry_after`` seconds until the window resets."""

    def __init__(self, message: str, *, retry_after: int, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = max(1, int(retry_after))

    def to_dict(self) -> dict:
        return {**super().to_dict(), "retry_after": self.retry_after}
