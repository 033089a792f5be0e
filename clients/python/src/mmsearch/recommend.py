"""Recommendation (``RecommendService`` and the admin user-data and training RPCs): plain
dataclasses shaped like their messages, and the conversions both clients share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from . import _convert as convert
from .types import Filter, Item, Rejected
from .v1 import mmsearch_pb2 as pb

__all__ = [
    "Interaction",
    "RecordResult",
    "Contributor",
    "Reason",
    "Recommendation",
    "RecommendResult",
    "TrainProgress",
    "Example",
]

_KINDS = {"view": pb.VIEW, "click": pb.CLICK, "cart": pb.CART, "purchase": pb.PURCHASE, "dwell": pb.DWELL}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}
_STRATEGIES = {"average_vector": pb.AVERAGE_VECTOR, "best_score": pb.BEST_SCORE, "collaborative": pb.COLLABORATIVE}


@dataclass(slots=True)
class Interaction:
    """One shopper interaction (``mmsearch.v1.Interaction``). ``kind`` is "view", "click",
    "cart", "purchase" or "dwell" (with ``dwell_ms``); ``timestamp_ms`` 0 = the server's
    clock; the same (``user_id``, ``idempotency_key``) is stored once."""

    user_id: str
    item_id: str
    kind: str = "view"
    dwell_ms: int = 0
    timestamp_ms: int = 0
    idempotency_key: str = ""


@dataclass(slots=True)
class RecordResult:
    """What ``record_interactions`` stored: accepted (duplicates included), duplicates, and
    the rejected ones with their positions and reasons."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)


@dataclass(slots=True)
class Contributor:
    """A history (or example) item behind a reason, with its share of that source's score."""

    item_id: str
    share: float
    #: The user's strongest interaction with it ("purchase", "view", ...); "" for examples.
    kind: str


@dataclass(slots=True)
class Reason:
    """Why a recommendation was made: the source ("collaborative", "content", "buy_again",
    "popularity", "positive", "negative"), its part of the score, and what contributed."""

    source: str
    contribution: float
    because: list[Contributor]


@dataclass(slots=True)
class Recommendation:
    """One recommended item; its reasons' contributions add up to ``score``."""

    id: str
    score: float
    item: Item
    reasons: list[Reason]


@dataclass(slots=True)
class RecommendResult:
    """Recommendations, best first, and the version of the model that made them (0: none)."""

    hits: list[Recommendation]
    model_version: int


@dataclass(slots=True)
class TrainProgress:
    """One progress report of a training ("loading", "training", "writing", "done"); the
    last one names the new model."""

    phase: str
    done: int
    total: int
    model_version: int
    algorithm: str
    interactions: int
    items: int
    users: int
    seconds: float


#: An example for ``recommend``: an item id (str), a vector (list of floats, in the text-role
#: space), or a dict with one of ``item_id``, ``vector``, ``text``, ``image`` (bytes), ``audio``
#: (bytes), and optionally ``weight``.
Example = Union[str, "list[float]", Mapping[str, Any]]


def interaction_message(i: Interaction | Mapping[str, Any]) -> pb.Interaction:
    if isinstance(i, Mapping):
        i = Interaction(**i)
    # An unknown kind goes out as UNSPECIFIED: the server rejects that one event with a reason.
    kind = _KINDS.get(i.kind.lower(), pb.INTERACTION_KIND_UNSPECIFIED)
    return pb.Interaction(
        user_id=i.user_id, item_id=i.item_id, kind=kind, dwell_ms=i.dwell_ms,
        timestamp_ms=i.timestamp_ms, idempotency_key=i.idempotency_key,
    )


def interaction(m: pb.Interaction) -> Interaction:
    return Interaction(m.user_id, m.item_id, _KIND_NAMES.get(m.kind, ""), m.dwell_ms, m.timestamp_ms, m.idempotency_key)


def record_result(m: pb.RecordSummary, base: int = 0) -> RecordResult:
    return RecordResult(m.accepted, m.duplicates, [Rejected(base + r.index, r.id, r.reason) for r in m.rejected])


def example_message(e: Example) -> pb.Example:
    if isinstance(e, str):
        return pb.Example(item_id=e)
    if isinstance(e, Mapping):
        d = dict(e)
        weight = d.pop("weight", None)
        if "vector" in d:
            d["vector"] = pb.Vector(space=d.pop("space", ""), values=[float(x) for x in d["vector"]])
        m = pb.Example(**d)
        if weight is not None:
            m.weight = float(weight)
        return m
    return pb.Example(vector=pb.Vector(values=[float(x) for x in e]))


def recommend_request(
    positive: Iterable[Example], negative: Iterable[Example], strategy: str, filter: Filter | Mapping[str, Any] | None,
    top_k: int, offset: int, min_score: float | None, exclude_inputs: bool, ignore_missing_ids: bool,
) -> pb.RecommendRequest:
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: one of {', '.join(_STRATEGIES)}")
    req = pb.RecommendRequest(
        positive=[example_message(e) for e in positive], negative=[example_message(e) for e in negative],
        strategy=_STRATEGIES[strategy], top_k=top_k, offset=offset, exclude_inputs=exclude_inputs,
        ignore_missing_ids=ignore_missing_ids,
    )
    f = convert.filter_message(filter)
    if f is not None:
        req.filter.CopyFrom(f)
    if min_score is not None:
        req.min_score = min_score
    return req


def for_user_request(
    user_id: str, top_k: int, filter: Filter | Mapping[str, Any] | None, exclude_seen: bool, offset: int
) -> pb.RecommendForUserRequest:
    req = pb.RecommendForUserRequest(user_id=user_id, top_k=top_k, exclude_seen=exclude_seen, offset=offset)
    f = convert.filter_message(filter)
    if f is not None:
        req.filter.CopyFrom(f)
    return req


def recommend_result(m: pb.RecommendResponse) -> RecommendResult:
    hits = [
        Recommendation(
            h.id, h.score, convert.item(h.item) if h.HasField("item") else Item(h.id),
            [Reason(r.source, r.contribution, [Contributor(c.item_id, c.share, c.kind) for c in r.because]) for r in h.reasons],
        )
        for h in m.hits
    ]
    return RecommendResult(hits, m.model_version)


def train_progress(m: pb.TrainProgress) -> TrainProgress:
    return TrainProgress(m.phase, m.done, m.total, m.model_version, m.algorithm, m.interactions, m.items, m.users, m.seconds)
