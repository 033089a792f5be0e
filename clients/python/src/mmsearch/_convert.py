"""Between the dataclasses of ``mmsearch.types`` and the generated messages; shared by the sync
and async clients."""

from __future__ import annotations

import dataclasses
import io
import math
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .types import (
    AudioInput,
    DeleteResult,
    Explanation,
    Facets,
    Filter,
    Hit,
    ImageInput,
    Item,
    ModelStatus,
    PriceRange,
    RebuildProgress,
    SearchResult,
    SnapshotInfo,
    LexicalScore,
    SpaceScore,
    SpaceStatus,
    Status,
    Timing,
    VectorInput,
    VideoInput,
    VideoQueryParts,
)
from .v1 import mmsearch_pb2 as pb

# ------------------------------------------------------------------------------ inputs


def image_bytes(image: ImageInput, base_dir: str | os.PathLike[str] | None = None) -> bytes:
    """The bytes to send for a photo given as a path, bytes or a PIL image."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        return _read(image, base_dir)
    if hasattr(image, "save") and type(image).__module__.startswith("PIL."):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    raise TypeError(f"an image must be a path, bytes or a PIL image, not {type(image).__name__}")


def audio_bytes(audio: AudioInput) -> bytes:
    """The bytes to send for a WAV recording given as a path or bytes."""
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return bytes(audio)
    if isinstance(audio, (str, os.PathLike)):
        return _read(audio, None)
    raise TypeError(f"a voice query must be a WAV path or bytes, not {type(audio).__name__}")


def video_bytes(video: VideoInput, base_dir: str | os.PathLike[str] | None = None) -> bytes:
    """The bytes to send for a video given as a path or bytes."""
    if isinstance(video, (bytes, bytearray, memoryview)):
        return bytes(video)
    if isinstance(video, (str, os.PathLike)):
        return _read(video, base_dir)
    raise TypeError(f"a video must be a path or bytes, not {type(video).__name__}")


def _read(path: str | os.PathLike[str], base_dir: str | os.PathLike[str] | None) -> bytes:
    p = Path(path)
    if base_dir is not None and not p.is_absolute():
        p = Path(base_dir) / p
    return p.read_bytes()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def vector_wire(space: str, v: VectorInput) -> bytes:
    """A ``Vector`` message, serialized: field 1 the space, field 2 the values as packed
    little-endian float32. Parsing this is a copy, where adding floats to a repeated field
    one by one costs ~0.3 µs each (100+ µs for a 384-d vector)."""
    astype = getattr(v, "astype", None)
    if astype is not None:
        if getattr(v, "ndim", 1) != 1:
            raise ValueError(f"a vector must be one-dimensional, got shape {getattr(v, 'shape', '?')}")
        data: bytes = astype("<f4", copy=False).tobytes()
    else:
        values = v if isinstance(v, (list, tuple)) else list(v)
        try:
            data = struct.pack(f"<{len(values)}f", *values)
        except (struct.error, OverflowError) as e:
            raise ValueError(f"a vector must hold numbers that fit a float32: {e}") from None
    name = space.encode()
    out = b""
    if name:
        out = b"\x0a" + _varint(len(name)) + name
    if data:
        out += b"\x12" + _varint(len(data)) + data
    return out


def filter_message(f: Filter | Mapping[str, Any] | None) -> pb.Filter | None:
    if f is None:
        return None
    if isinstance(f, Mapping):
        unknown = set(f) - {"categories", "price_min", "price_max", "attributes"}
        if unknown:
            raise ValueError(f"unknown filter keys {sorted(unknown)}")
        categories = f.get("categories", [])
        f = Filter(
            categories=[categories] if isinstance(categories, str) else list(categories),
            price_min=f.get("price_min"),
            price_max=f.get("price_max"),
            attributes=dict(f.get("attributes", {})),
        )
    msg = pb.Filter(categories=f.categories, attributes=f.attributes)
    if f.price_min is not None:
        msg.price_min = float(f.price_min)
    if f.price_max is not None:
        msg.price_max = float(f.price_max)
    return msg


def search_request(
    *,
    text: str | None,
    image: ImageInput | None,
    voice: AudioInput | None,
    video: VideoInput | None,
    vector: VectorInput | None,
    item_id: str | None,
    space: str,
    filter: Filter | Mapping[str, Any] | None,
    top_k: int,
    offset: int,
    min_score: float,
    ef: int,
    explain: bool,
    user_id: str = "",
    personalization: float = 0.0,
    mode: str | None = None,
    fusion: str | None = None,
    lexical_weight: float | None = None,
    sort: str | None = None,
    facets: bool = False,
    facet_candidates: int = 0,
    speech_language: str = "",
) -> pb.SearchRequest:
    given = [
        n
        for n, v in (("text", text), ("image", image), ("voice", voice), ("video", video), ("vector", vector), ("item_id", item_id))
        if v is not None
    ]
    browsing = not given and (sort is not None or filter is not None)
    if len(given) != 1 and not browsing:
        raise ValueError(
            f"give exactly one of text, image, voice, video, vector, item_id, or browse with filter/sort (got {given or 'none'})"
        )
    req = pb.SearchRequest(
        top_k=top_k, offset=offset, min_score=min_score, space=space, ef=ef, explain=explain, user_id=user_id,
        personalization=personalization, facets=facets, facet_candidates=facet_candidates,
        speech_language=speech_language,
    )
    req.mode = _enum(_MODES, "mode", mode)
    req.fusion = _enum(_FUSIONS, "fusion", fusion)
    req.sort = _enum(_SORTS, "sort", sort)
    if lexical_weight is not None:
        req.lexical_weight = lexical_weight
    if text is not None:
        req.text = text
    elif image is not None:
        req.image = image_bytes(image)
    elif voice is not None:
        req.audio = audio_bytes(voice)
    elif video is not None:
        req.video = video_bytes(video)
    elif item_id is not None:
        req.item_id = item_id
    elif vector is not None:
        req.vector.SetInParent()
        req.vector.MergeFromString(vector_wire(space, vector))
    flt = filter_message(filter)
    if flt is not None:
        req.filter.CopyFrom(flt)
    return req


_MODES = {"vector": pb.SEARCH_MODE_VECTOR, "lexical": pb.SEARCH_MODE_LEXICAL, "hybrid": pb.SEARCH_MODE_HYBRID}
_FUSIONS = {"rrf": pb.FUSION_METHOD_RRF, "convex": pb.FUSION_METHOD_CONVEX}
_SORTS = {"newest": pb.SORT_BY_NEWEST, "price_asc": pb.SORT_BY_PRICE_ASC, "price_desc": pb.SORT_BY_PRICE_DESC}


def _enum(values: Mapping[str, Any], what: str, v: str | None) -> Any:
    if v is None:
        return 0
    if v not in values:
        raise ValueError(f"{what} must be one of {', '.join(values)} (got {v!r})")
    return values[v]


_ITEM_FIELDS = {f.name for f in dataclasses.fields(Item)}


def _is_missing(v: Any) -> bool:
    # pandas gives NaN (or NA/None) for empty cells; treat them as absent.
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return type(v).__name__ in ("NAType", "NaTType")


def item_fields(obj: Any) -> dict[str, Any]:
    """The fields of an item given as an ``Item``, any dataclass, or a mapping (a catalogue
    line, a DataFrame row). Keys ``attributes.<name>`` and ``vectors.<space>`` (as
    ``pandas.json_normalize`` flattens them) go into ``attributes`` and ``vectors``; missing
    values (None, NaN) count as absent."""
    if isinstance(obj, Item):
        raw: Mapping[str, Any] = {f: getattr(obj, f) for f in _ITEM_FIELDS}
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        raw = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    elif isinstance(obj, Mapping):
        raw = obj
    else:
        raise TypeError(f"an item must be a dict, an Item or a dataclass, not {type(obj).__name__}")
    out: dict[str, Any] = {}
    unknown = []
    for key, value in raw.items():
        if _is_missing(value):
            continue
        key = str(key)
        if key.startswith("attributes."):
            out.setdefault("attributes", {})[key[len("attributes."):]] = value
        elif key.startswith("vectors."):
            out.setdefault("vectors", {})[key[len("vectors."):]] = value
        elif key in _ITEM_FIELDS:
            if key in ("attributes", "vectors") and key in out:
                out[key] = {**dict(value), **out[key]}
            else:
                out[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; an item has {sorted(_ITEM_FIELDS - {'version'})}")
    return out


def _str_list(v: Any) -> list[Any]:
    if isinstance(v, (str, bytes, os.PathLike)) or type(v).__module__.startswith("PIL."):
        return [v]
    return list(v)


def item_message(obj: Any, base_dir: str | os.PathLike[str] | None = None) -> pb.Item:
    """An ``Item`` message from anything ``item_fields`` accepts; photos given as paths are
    read (relative ones against ``base_dir``) and, unless ``image_uris`` is given, their paths
    become the item's image URIs, as ``mmsearch ingest`` does. Raises ValueError or TypeError
    (or OSError for an unreadable photo) with the reason the item cannot be sent."""
    f = item_fields(obj)
    item_id = f.get("id")
    if not isinstance(item_id, str) or not item_id.strip():
        raise ValueError("missing id")
    msg = pb.Item(
        id=item_id,
        title=str(f.get("title", "")),
        description=str(f.get("description", "")),
        category=str(f.get("category", "")),
        price=float(f.get("price", 0.0)),
    )
    for k, v in dict(f.get("attributes", {})).items():
        if _is_missing(v):
            continue
        msg.attributes[str(k)] = v if isinstance(v, str) else str(v)
    images = _str_list(f.get("images", []))
    uris = [str(u) for u in _str_list(f.get("image_uris", []))]
    for image in images:
        msg.images.append(image_bytes(image, base_dir))
        if "image_uris" not in f and isinstance(image, (str, os.PathLike)):
            uris.append(os.fspath(image))
    msg.image_uris.extend(uris)
    videos = _str_list(f.get("videos", []))
    video_uris = [str(u) for u in _str_list(f.get("video_uris", []))]
    for video in videos:
        msg.videos.append(video_bytes(video, base_dir))
        if "video_uris" not in f and isinstance(video, (str, os.PathLike)):
            video_uris.append(os.fspath(video))
    msg.video_uris.extend(video_uris)
    for space, values in dict(f.get("vectors", {})).items():
        msg.vectors.add().MergeFromString(vector_wire(str(space), values))
    if "text_weight" in f:
        msg.text_weight = float(f["text_weight"])
    if "image_weight" in f:
        msg.image_weight = float(f["image_weight"])
    return msg


def iter_rows(items: Any) -> Iterator[Any]:
    """The rows of ``upsert``'s argument: a pandas DataFrame's records, else the iterable."""
    if type(items).__module__.startswith("pandas") and hasattr(items, "to_dict"):
        yield from items.to_dict("records")
    else:
        yield from items


def ids_list(ids: str | Iterable[str]) -> list[str]:
    return [ids] if isinstance(ids, str) else list(ids)


# ------------------------------------------------------------------------------ outputs


def item(m: pb.Item) -> Item:
    # Positional, each field read once, empty repeated fields skipped: hits are converted on
    # every search, and each access to a upb field costs (≈ 0.1 µs; a map's dict() walks the
    # Mapping ABC, a comprehension over its keys is 2x faster).
    attributes = m.attributes
    uris = m.image_uris
    vectors = m.vectors
    videos = m.video_uris
    return Item(
        m.id,
        m.title,
        m.description,
        m.category,
        m.price,
        {k: attributes[k] for k in attributes} if attributes else {},
        [],
        list(uris) if uris else [],
        {v.space: list(v.values) for v in vectors} if vectors else {},
        m.text_weight if m.HasField("text_weight") else None,
        m.image_weight if m.HasField("image_weight") else None,
        m.version,
        [],
        list(videos) if videos else [],
    )


def explanation(m: pb.Explanation) -> Explanation:
    return Explanation(
        plan=m.plan,
        spaces=[SpaceScore(s.space, s.role, s.score, s.weight, s.estimated, s.rank) for s in m.spaces],
        score=m.score,
        video=VideoQueryParts(v.frames, v.frame_weight, v.speech_weight, v.seconds) if m.HasField("video") and (v := m.video) else None,
        offset=m.offset,
        parts=[(p.name, p.value, p.weight, p.contribution) for p in m.parts],
        lexical=LexicalScore(m.lexical.bm25, m.lexical.rank, m.lexical.contribution) if m.HasField("lexical") else None,
        fusion=m.fusion,
        vector_contribution=m.vector_contribution,
    )


def search_result(m: pb.SearchResponse) -> SearchResult:
    hits: list[Hit] = []
    append = hits.append
    for h in m.hits:
        append(
            Hit(
                h.id,
                h.score,
                item(h.item) if h.HasField("item") else Item(h.id),
                explanation(h.explanation) if h.HasField("explanation") else None,
                h.snippet,
            )
        )
    t = m.timing
    total = m.total if m.HasField("total") else None
    counted = m.facet_counted
    facets = (
        Facets(
            [(c.value, c.count) for c in m.categories],
            [PriceRange(r.min, r.max or None, r.count) for r in m.price_ranges],
            counted,
        )
        if counted or m.categories or m.price_ranges
        else None
    )
    return SearchResult(hits, m.transcript, m.exact, Timing(t.encode_us, t.search_us, t.hydrate_us), total, facets)


def delete_result(m: pb.DeleteResponse) -> DeleteResult:
    return DeleteResult(deleted=m.deleted, not_found=list(m.not_found))


def status(m: pb.StatusResponse) -> Status:
    return Status(
        items=m.items,
        generation=m.generation,
        generations_on_disk=list(m.generations_on_disk),
        spaces=[
            SpaceStatus(s.name, s.dim, s.metric, s.base_vectors, s.fresh_vectors, s.tombstones, list(s.layer_counts), s.role)
            for s in m.spaces
        ],
        models=[ModelStatus(x.id, x.kind, x.provider, x.dim) for x in m.models],
        uptime_seconds=m.uptime_seconds,
        rebuilding=m.rebuilding,
        last_version=m.last_version,
        version=m.version,
    )


def progress(m: pb.RebuildProgress) -> RebuildProgress:
    return RebuildProgress(m.phase, m.done, m.total, m.eta_seconds, m.generation, m.space)


def snapshot_request(name: str | None) -> pb.SnapshotRequest:
    """A SnapshotRequest for ``name`` (None or empty: the server picks one). The server
    checks the name (a str that is a path fails there as a bad name); a path object is refused
    here, since the server writes snapshots only under its own snapshot directory."""
    if name is None:
        return pb.SnapshotRequest()
    if not isinstance(name, str):
        raise TypeError(
            f"snapshot() takes a name (str), not {type(name).__name__}: the server writes snapshots"
            " only under its configured snapshot directory"
        )
    return pb.SnapshotRequest(name=name)


def snapshot_info(m: pb.SnapshotResponse) -> SnapshotInfo:
    return SnapshotInfo(
        name=m.name,
        directory=m.directory,
        last_version=m.last_version,
        generation=m.generation,
        generation_version=m.generation_version,
        model_ids=list(m.model_ids),
        bytes=m.bytes,
        linked_bytes=m.linked_bytes,
        files=m.files,
        seconds=m.seconds,
    )
