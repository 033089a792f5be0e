"""Plain dataclasses shaped like the messages of ``proto/mmsearch/v1/mmsearch.proto``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence, Union

if TYPE_CHECKING:
    import numpy
    import numpy.typing
    import PIL.Image

__all__ = [
    "ImageInput",
    "AudioInput",
    "VectorInput",
    "Item",
    "Filter",
    "SpaceScore",
    "Explanation",
    "Hit",
    "Timing",
    "SearchResult",
    "Rejected",
    "UpsertResult",
    "DeleteResult",
    "SpaceStatus",
    "ModelStatus",
    "Status",
    "RebuildProgress",
    "SnapshotInfo",
]

#: A photo: a file path, the file's bytes (JPEG, PNG, WebP, GIF, BMP), or a PIL image (sent
#: as PNG).
ImageInput = Union[str, "os.PathLike[str]", bytes, "PIL.Image.Image"]
#: A recording: a WAV file path or its bytes.
AudioInput = Union[str, "os.PathLike[str]", bytes]
#: A video: a path or the file's bytes (MP4, WebM, MOV, … what the server's FFmpeg reads).
VideoInput = Union[str, "os.PathLike[str]", bytes]
#: A vector: a sequence of floats or a one-dimensional numpy array.
VectorInput = Union[Sequence[float], "numpy.typing.NDArray[Any]"]


@dataclass(slots=True)
class Item:
    """A catalogue item (``mmsearch.v1.Item``).

    For ``upsert``, ``images`` are photos to encode (paths, bytes or PIL images; never
    stored, only their vectors are) and ``vectors`` precomputed vectors by space name; the
    server's encoders fill the spaces not given. Items the server returns (``get``, search
    hits) carry neither: they hold the stored metadata and ``version``, the server-assigned
    write sequence.
    """

    id: str
    title: str = ""
    description: str = ""
    category: str = ""
    price: float = 0.0
    attributes: dict[str, str] = field(default_factory=dict)
    images: list[ImageInput] = field(default_factory=list)
    image_uris: list[str] = field(default_factory=list)
    vectors: dict[str, VectorInput] = field(default_factory=dict)
    text_weight: float | None = None
    image_weight: float | None = None
    version: int = 0
    #: Videos to encode (paths or bytes; keyframes and soundtrack, never stored).
    videos: list[VideoInput] = field(default_factory=list)
    video_uris: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Filter:
    """Restricts a search (``mmsearch.v1.Filter``): any of ``categories``, a price range, and
    attributes that must all match exactly."""

    categories: list[str] = field(default_factory=list)
    price_min: float | None = None
    price_max: float | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class SpaceScore:
    """One vector space's part in a hit's score."""

    space: str
    #: "text", "visual", or empty for a space without a role.
    role: str
    score: float
    #: Weight of this part in the final score.
    weight: float
    #: The item was not in this space's list: ``score`` is that list's lowest, an upper bound.
    estimated: bool
    #: 1-based rank in this space's list; 0 when absent from it.
    rank: int


@dataclass(slots=True)
class VideoQueryParts:
    """A video query's text-role vector: ``frame_weight`` × mean(keyframes) + ``speech_weight``
    × T(transcript), weights as used (they sum to 1; speech is 0 for a silent video)."""

    frames: int
    frame_weight: float
    speech_weight: float
    seconds: float


@dataclass(slots=True)
class LexicalScore:
    """The lexical (BM25) list's part in a hit's score (modes ``lexical`` and ``hybrid``)."""

    bm25: float
    #: 1-based rank in the lexical list; 0 when absent from it.
    rank: int
    #: What it added to the hit's score.
    contribution: float


@dataclass(slots=True)
class Explanation:
    """Why a hit scored what it did (asked for with ``search(..., explain=True)``)."""

    #: How candidates were found: "graph", "graph_widened", "exact" (per space searched,
    #: joined with "+"; "+lexical" for hybrid, "lexical", "browse").
    plan: str
    spaces: list[SpaceScore]
    score: float
    #: Video queries: how keyframes and speech made the query vector.
    video: VideoQueryParts | None = None
    #: Personalised search (``user_id``): score = offset + sum of the parts' contributions;
    #: each part is (name, value, weight, contribution), names "similarity" and "personal".
    offset: float = 0.0
    parts: list[tuple[str, float, float, float]] = field(default_factory=list)
    #: Modes ``lexical`` and ``hybrid``: the BM25 list's part.
    lexical: LexicalScore | None = None
    #: Mode ``hybrid``: the fusion, e.g. "rrf(k=60, w=0.5)", and the vector list's share.
    fusion: str = ""
    vector_contribution: float = 0.0


@dataclass(slots=True)
class Hit:
    """One search result: the item's id, its score, its stored metadata (the server always
    sends it; an item holding only the id stands in should a response lack it) and, when
    asked for, an explanation."""

    id: str
    score: float
    item: Item
    explanation: Explanation | None = None
    #: Modes ``lexical`` and ``hybrid``: the description (else title) fragment matching the
    #: query's words, matches in ``<b>…</b>``, the rest HTML-escaped; empty when none matches.
    snippet: str = ""


@dataclass(slots=True)
class Timing:
    """Server-side time spent on a search, in microseconds."""

    encode_us: int = 0
    search_us: int = 0
    hydrate_us: int = 0


@dataclass(slots=True)
class PriceRange:
    """Items with ``min <= price < max``; ``max`` is None on an open-ended last range."""

    min: float
    max: float | None
    count: int


@dataclass(slots=True)
class Facets:
    """Counts by category (most first) and by price range (ascending, empty ones left out)
    over ``counted`` items: a query's top candidates that pass the filter, or every match
    when browsing."""

    categories: list[tuple[str, int]] = field(default_factory=list)
    price_ranges: list[PriceRange] = field(default_factory=list)
    counted: int = 0


@dataclass(slots=True)
class SearchResult:
    """A search's answer (``mmsearch.v1.SearchResponse``)."""

    hits: list[Hit]
    #: For voice and video queries: what the speech model heard.
    transcript: str = ""
    #: True when the filter was so selective that matching items were scanned exactly.
    exact: bool = False
    timing: Timing = field(default_factory=Timing)
    #: Browse (no query): how many items match the filter.
    total: int | None = None
    #: With ``search(facets=True)``.
    facets: Facets | None = None


@dataclass(slots=True)
class Rejected:
    """An item ``upsert`` did not write."""

    #: Position of the item in the iterable given to ``upsert`` (0-based).
    index: int
    id: str
    reason: str


@dataclass(slots=True)
class UpsertResult:
    """What ``upsert`` wrote: the accepted count, the rejected items with reasons (in input
    order), and the write sequence of the last accepted item."""

    accepted: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    last_version: int = 0


@dataclass(slots=True)
class DeleteResult:
    """What ``delete`` removed."""

    deleted: int
    not_found: list[str]


@dataclass(slots=True)
class SpaceStatus:
    """One vector space of the server (``mmsearch.v1.SpaceStatus``)."""

    name: str
    dim: int
    metric: str
    #: Vectors in the mapped base generation.
    base_vectors: int
    #: Vectors written since the base generation (mutable layer).
    fresh_vectors: int
    #: Base vectors hidden by deletes or replacements, awaiting the next rebuild.
    tombstones: int
    #: HNSW points per layer (layer 0 first) of the base generation.
    layer_counts: list[int]
    #: "text", "visual", or empty: which encoder's output goes into this space.
    role: str


@dataclass(slots=True)
class ModelStatus:
    """An encoder model the server loaded."""

    id: str
    kind: str
    provider: str
    dim: int


@dataclass(slots=True)
class Status:
    """The server's state (``mmsearch.v1.StatusResponse``)."""

    items: int
    generation: int
    generations_on_disk: list[int]
    spaces: list[SpaceStatus]
    models: list[ModelStatus]
    uptime_seconds: int
    rebuilding: bool
    last_version: int
    version: str


@dataclass(slots=True)
class RebuildProgress:
    """One progress report of a rebuild."""

    #: "queued", "scanning", "building", "writing", "swapping", "done".
    phase: str
    done: int
    total: int
    #: Estimated seconds left in this phase.
    eta_seconds: float
    generation: int
    space: str


@dataclass(slots=True)
class SnapshotInfo:
    """A snapshot the server wrote (``mmsearch.v1.SnapshotResponse``)."""

    #: The snapshot's name: the one given to ``snapshot``, or the one the server generated
    #: (``snapshot-<UTC time>-v<last version>``).
    name: str
    #: Where it lies on the server's machine, under the server's snapshot directory
    #: (informational: for ``mmsearch restore`` there).
    directory: str
    #: Last write version the store checkpoint contains.
    last_version: int
    #: Index generation included (0 = none yet) and the version it covers.
    generation: int
    generation_version: int
    #: Ids of the models the stored vectors were made with.
    model_ids: list[str]
    bytes: int
    #: How much of ``bytes`` is shared with the data directory through hard links.
    linked_bytes: int
    files: int
    seconds: float
