"""The one JSON error shape of every route: {"error": {"type", "message", "status", "field"?}}."""
from __future__ import annotations

import json

from ..characters import SURROGATE as SURROGATES  # the one check of whole characters, as the readers and CLI


class RequestError(Exception):
    """A request the server refuses: the HTTP status, a message, and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None, kind: str = "invalid_request",
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.kind, self.headers = status, message, field, kind, headers


def printable(text: str) -> str:
    """`text` with lone surrogates (which UTF-8 cannot carry) shown as U+FFFD: a field name comes from the client."""
    return SURROGATES.sub("\ufffd", text)


def error_body(status: int, message: str, field: str | None = None, kind: str = "invalid_request") -> dict:
    error = {"type": kind, "message": printable(message), "status": status}
    if field is not None:
        error["field"] = printable(field)
    return {"error": error}


def error_bytes(status: int, message: str, field: str | None = None, kind: str = "invalid_request") -> bytes:
    return json.dumps(error_body(status, message, field, kind), separators=(",", ":")).encode()
