"""Connection settings and the retry policy, shared by ``Client`` and ``AsyncClient``."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import grpc

__all__ = ["RetryPolicy", "PemInput", "DEFAULT_MAX_MESSAGE_BYTES"]

#: The server's default ``limits.max_message_bytes`` (32 MiB); gRPC Python's default receive
#: limit (4 MiB) is below it.
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024

#: A PEM file's path or its contents.
PemInput = Union[str, "os.PathLike[str]", bytes]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff and full jitter.

    Only calls that are safe to repeat are retried (Search, Get, Status, Delete, and each
    batch of an Upsert; never Rebuild or Snapshot), and only on UNAVAILABLE or on
    RESOURCE_EXHAUSTED from the server's admission control. The call's deadline covers all
    attempts: no retry starts after it.

    ``RetryPolicy(max_attempts=1)`` turns retries off.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based): uniformly random up to
        ``initial_backoff * multiplier**retry``, capped at ``max_backoff``."""
        cap = min(self.max_backoff, self.initial_backoff * self.multiplier**retry)
        return random.uniform(0.0, cap)


NO_RETRY = RetryPolicy(max_attempts=1)


def _pem(v: PemInput | None) -> bytes | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        return v
    return Path(v).read_bytes()


@dataclass(frozen=True)
class Connection:
    """Where and how to connect, derived from the client's arguments."""

    target: str
    credentials: grpc.ChannelCredentials | None
    options: tuple[tuple[str, int | str], ...]
    metadata: tuple[tuple[str, str], ...]


def connection(
    target: str,
    *,
    api_key: str | None,
    tls: bool | None,
    ca_cert: PemInput | None,
    client_cert: PemInput | None,
    client_key: PemInput | None,
    tls_server_name: str | None,
    max_message_bytes: int,
) -> Connection:
    """Parses ``host:port``, ``http://host:port`` (plaintext) or ``https://host:port`` (TLS)
    and builds the channel credentials, options and per-call metadata."""
    scheme_tls: bool | None = None
    if target.startswith("https://"):
        target, scheme_tls = target[len("https://"):], True
    elif target.startswith("http://"):
        target, scheme_tls = target[len("http://"):], False
    target = target.rstrip("/")
    if tls is None:
        tls = bool(scheme_tls) or ca_cert is not None or client_cert is not None
    elif scheme_tls is not None and scheme_tls != tls:
        raise ValueError(f"tls={tls} contradicts the scheme of the target {target!r}")
    if not tls and (ca_cert is not None or client_cert is not None or client_key is not None):
        raise ValueError("ca_cert, client_cert and client_key need tls")
    credentials = None
    if tls:
        cert = _pem(client_cert)
        key = _pem(client_key)
        if cert is not None and key is None and b"PRIVATE KEY" in cert:
            key = cert  # one PEM file holding both
        if (cert is None) != (key is None):
            raise ValueError("mutual TLS needs both client_cert and client_key")
        credentials = grpc.ssl_channel_credentials(root_certificates=_pem(ca_cert), private_key=key, certificate_chain=cert)
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        # Sends are left unlimited so that the server, which knows its own limit, answers an
        # oversized request (RESOURCE_EXHAUSTED) rather than the client guessing.
        ("grpc.max_send_message_length", -1),
    ]
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    metadata: tuple[tuple[str, str], ...] = ()
    if api_key:
        metadata = (("authorization", f"Bearer {api_key}"),)
    return Connection(target=target, credentials=credentials, options=tuple(options), metadata=metadata)
