"""Python client for mmsearch, the multimodal product search server.

>>> from mmsearch import Client
>>> with Client("localhost:50051") as client:
...     client.upsert(mmsearch.read_jsonl("catalog.jsonl"))
...     for hit in client.search("camera on a tripod", top_k=5).hits:
...         print(hit.score, hit.item.title)

``Client`` is synchronous, ``AsyncClient`` (grpc.aio) has the same methods as coroutines.
Errors are ``MmsearchError`` subclasses, one per gRPC status (``mmsearch.errors``). The raw
generated stubs are in ``mmsearch.v1``.
"""

from ._options import DEFAULT_MAX_MESSAGE_BYTES, RetryPolicy
from .aio import AsyncClient
from .catalog import read_csv, read_jsonl
from .client import Client
from .recommend import Contributor, Interaction, Reason, Recommendation, RecommendResult, RecordResult, TrainProgress
from .errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    MmsearchError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from .types import (
    DeleteResult,
    Explanation,
    Filter,
    Hit,
    Item,
    LexicalScore,
    ModelStatus,
    RebuildProgress,
    Rejected,
    Facets,
    PriceRange,
    SearchResult,
    SnapshotInfo,
    SpaceScore,
    SpaceStatus,
    Status,
    Timing,
    UpsertResult,
    VideoQueryParts,
)

__version__ = "0.1.0"

__all__ = [
    "Client",
    "AsyncClient",
    "RetryPolicy",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "read_jsonl",
    "read_csv",
    "Item",
    "Filter",
    "Hit",
    "Explanation",
    "SpaceScore",
    "VideoQueryParts",
    "LexicalScore",
    "Timing",
    "SearchResult",
    "Facets",
    "PriceRange",
    "Rejected",
    "UpsertResult",
    "DeleteResult",
    "SpaceStatus",
    "ModelStatus",
    "Status",
    "RebuildProgress",
    "SnapshotInfo",
    "Interaction",
    "RecordResult",
    "Contributor",
    "Reason",
    "Recommendation",
    "RecommendResult",
    "TrainProgress",
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
]
