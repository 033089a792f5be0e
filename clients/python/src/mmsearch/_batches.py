"""Upsert batching shared by the sync and async clients: items become request batches, and the
per-batch summaries become one ``UpsertResult`` in the caller's numbering."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import _convert as convert
from .types import Rejected, UpsertResult
from .v1 import mmsearch_pb2 as pb


@dataclass
class Batch:
    requests: list[pb.UpsertRequest] = field(default_factory=list)
    #: Position in the caller's iterable of each request.
    indices: list[int] = field(default_factory=list)
    #: Items that could not be sent (bad fields, unreadable photo), with reasons.
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.requests) + len(self.rejected)


def batches(items: Any, batch_size: int, base_dir: str | os.PathLike[str] | None) -> Iterator[Batch]:
    """Batches of at most ``batch_size`` requests. An item that cannot be converted is
    rejected with its reason rather than ending the upsert, as ``mmsearch ingest`` reports a
    bad catalogue line and goes on."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    batch = Batch()
    for index, obj in enumerate(convert.iter_rows(items)):
        try:
            msg = convert.item_message(obj, base_dir)
        except (ValueError, TypeError, OSError) as e:
            batch.rejected.append(Rejected(index=index, id=_id_of(obj), reason=str(e)))
        else:
            batch.requests.append(pb.UpsertRequest(item=msg))
            batch.indices.append(index)
        if len(batch.requests) >= batch_size:
            yield batch
            batch = Batch()
    if batch.count:
        yield batch


def _id_of(obj: Any) -> str:
    value = obj.get("id") if isinstance(obj, dict) else getattr(obj, "id", None)
    return value if isinstance(value, str) else ""


def merge(result: UpsertResult, batch: Batch, summary: pb.UpsertSummary | None) -> None:
    """Adds a batch's client-side rejects and its server summary to ``result``."""
    result.rejected.extend(batch.rejected)
    if summary is None:
        return
    result.accepted += summary.accepted
    for r in summary.rejected:
        index = batch.indices[r.index] if r.index < len(batch.indices) else -1
        result.rejected.append(Rejected(index=index, id=r.id, reason=r.reason))
    if summary.last_version:
        result.last_version = max(result.last_version, summary.last_version)


class ProgressBar(Protocol):
    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(items: Any, progress: bool) -> ProgressBar:
    """A tqdm bar over the items when ``progress`` is true (tqdm is the ``progress`` extra)."""
    if not progress:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("progress=True needs tqdm: pip install 'mmsearch-client[progress]'") from e
    total = len(items) if hasattr(items, "__len__") else None
    return tqdm(total=total, unit="item", desc="upsert")
