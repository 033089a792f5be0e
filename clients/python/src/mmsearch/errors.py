"""Errors raised by the mmsearch client: one class per gRPC status the server answers with.

Every error carries the server's message, the status code and the request id the server
logged the call under (its ``x-request-id`` response metadata), so a failure can be found in
the server's logs. The server's mapping from its own errors to statuses is
``src/server/status.rs``; the admission layer (``src/server/admission.rs``) answers
RESOURCE_EXHAUSTED when a service is saturated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc

__all__ = [
    "MmsearchError",
    "InvalidArgumentError",
    "NotFoundError",
    "AlreadyExistsError",
    "FailedPreconditionError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnavailableError",
    "DeadlineExceededError",
    "UnimplementedError",
    "InternalError",
    "error_class",
    "from_rpc_error",
]


class MmsearchError(Exception):
    """A call to the server failed.

    Attributes:
        code: the gRPC status code.
        message: the server's message (``grpc-message``), or gRPC's own for transport failures.
        request_id: the id the server logged the request under (``x-request-id``), when it
            answered at all.
        attempts: how many times the call was tried (more than one when it was retried).
    """

    code: grpc.StatusCode

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        elif not hasattr(type(self), "code"):
            self.code = grpc.StatusCode.UNKNOWN
        self.request_id = request_id
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        """Whether trying the same call again later may succeed (and is safe for an
        idempotent call): UNAVAILABLE, and RESOURCE_EXHAUSTED when the server's admission
        control refused the call (not an oversized message or a full disk)."""
        return False

    def __str__(self) -> str:
        rid = f" [request {self.request_id}]" if self.request_id else ""
        return f"{self.code.name}: {self.message}{rid}"


class InvalidArgumentError(MmsearchError):
    """INVALID_ARGUMENT: a bad request (top_k out of range, wrong vector dimension, unknown
    space, empty query, corrupt or oversized image/audio, a bad snapshot name, ...)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(MmsearchError):
    """NOT_FOUND: the item (or, for Delete, every one of the ids) does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(MmsearchError):
    """ALREADY_EXISTS: the server already has a snapshot of that name (or one by that name is
    being written, or was interrupted)."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(MmsearchError):
    """FAILED_PRECONDITION: the request is valid but the state does not allow it, e.g. a
    more-like-this query in a space the item has no vector in, or a snapshot when the server's
    snapshot directory cannot be written (its setup is wrong; the message says why)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class UnauthenticatedError(MmsearchError):
    """UNAUTHENTICATED: no API key, a malformed one, or one the server does not know."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(MmsearchError):
    """PERMISSION_DENIED: the API key lacks the role the service needs (search, ingest,
    admin)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(MmsearchError):
    """RESOURCE_EXHAUSTED: either the server's admission control turned the call away (the
    service is at its concurrency limit and its queue is full, or the call waited in the
    queue too long: retryable), or the message is larger than the server accepts, or a
    snapshot ran out of disk (not retryable)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    @property
    def is_admission(self) -> bool:
        """True when the server's admission control refused the call (see
        ``src/server/admission.rs``: "... service is at its concurrency limit ..." and
        "... service stayed at its concurrency limit ..."), as opposed to a message that is
        too large or a full disk."""
        return "concurrency limit" in self.message

    @property
    def retryable(self) -> bool:
        return self.is_admission


class UnavailableError(MmsearchError):
    """UNAVAILABLE: the server cannot be reached, is shutting down, or a model it needs is
    unavailable. Retryable."""

    code = grpc.StatusCode.UNAVAILABLE

    @property
    def retryable(self) -> bool:
        return True


class DeadlineExceededError(MmsearchError):
    """DEADLINE_EXCEEDED: the call's deadline (the client's ``timeout``, capped by the
    server's ``limits.request_timeout_ms``) passed before it finished."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class UnimplementedError(MmsearchError):
    """UNIMPLEMENTED: the server cannot answer this kind of request, e.g. a text, image or
    voice query to a server started without models, or an RPC the server does not have."""

    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(MmsearchError):
    """INTERNAL: the server failed; its log has the details under the request id."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[MmsearchError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        UnauthenticatedError,
        PermissionDeniedError,
        ResourceExhaustedError,
        UnavailableError,
        DeadlineExceededError,
        UnimplementedError,
        InternalError,
    )
}


def error_class(code: grpc.StatusCode) -> type[MmsearchError]:
    """The exception class for a status code (``MmsearchError`` itself for codes the server
    does not use, such as CANCELLED or UNKNOWN)."""
    return _BY_CODE.get(code, MmsearchError)


def _request_id(metadata: Iterable[Any] | None) -> str | None:
    for entry in metadata or ():
        key, value = entry[0], entry[1]
        if key == "x-request-id":
            return value if isinstance(value, str) else bytes(value).decode("ascii", "replace")
    return None


def from_rpc_error(error: grpc.RpcError, attempts: int = 1) -> MmsearchError:
    """Converts an error raised by a grpc (or grpc.aio) call into the matching
    ``MmsearchError`` subclass, with the request id from the response metadata."""
    code: grpc.StatusCode = getattr(error, "code")()
    details = getattr(error, "details")()
    message = details if isinstance(details, str) else str(error)
    request_id = None
    # The server sends the id in the response headers; for an error answered before any
    # message (trailers-only), gRPC reports those headers as trailing metadata.
    for accessor in ("trailing_metadata", "initial_metadata"):
        get = getattr(error, accessor, None)
        if get is None or request_id is not None:
            continue
        try:
            request_id = _request_id(get())
        except Exception:  # pragma: no cover - metadata of a call that never started
            request_id = None
    return error_class(code)(message, code=code, request_id=request_id, attempts=attempts)
