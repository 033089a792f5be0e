"""The synchronous client."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload

import grpc

from . import _batches
from . import recommend as rec
from .recommend import Interaction, RecommendResult, RecordResult, TrainProgress
from . import _convert as convert
from ._options import DEFAULT_MAX_MESSAGE_BYTES, PemInput, RetryPolicy, connection
from .errors import NotFoundError, from_rpc_error
from .types import (
    AudioInput,
    VideoInput,
    DeleteResult,
    Filter,
    ImageInput,
    Item,
    RebuildProgress,
    SearchResult,
    SnapshotInfo,
    Status,
    UpsertResult,
    VectorInput,
)
from .v1 import mmsearch_pb2 as pb
from .v1 import mmsearch_pb2_grpc as pb_grpc

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """A connection to an mmsearch server, with one method per RPC of
    ``proto/mmsearch/v1/mmsearch.proto``.

    Args:
        target: ``host:port``; ``http://host:port`` (plaintext) and ``https://host:port``
            (TLS) are accepted too, as ``mmsearch --server`` takes them.
        api_key: sent as ``authorization: Bearer <key>`` on every call (``mmsearch keygen``
            makes keys; a key's roles decide which services it reaches).
        tls: use TLS. Default: when the target says ``https://`` or a certificate is given.
        ca_cert: PEM (path or bytes) of the CA that signed the server's certificate; default:
            the system's roots.
        client_cert, client_key: PEM client certificate and key, for servers that require
            them (mutual TLS, ``[tls] client_ca``). One file holding both may be given as
            ``client_cert`` alone.
        tls_server_name: name to verify the server's certificate against (default: the host).
        timeout: deadline in seconds of Search, Get, Delete and Status calls, retries
            included (None: no deadline). Each method also takes ``timeout=``.
        long_timeout: deadline of each Upsert batch, of a Rebuild stream and of a Snapshot.
        retry: when and how often to retry (see ``RetryPolicy``); ``RetryPolicy(max_attempts=1)``
            turns retries off.
        max_message_bytes: largest response accepted; the server's default
            ``limits.max_message_bytes`` (32 MiB).
        channel_options: further gRPC channel options.

    A client is a context manager; ``close()`` releases the connection. It may be shared
    between threads.
    """

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        api_key: str | None = None,
        tls: bool | None = None,
        ca_cert: PemInput | None = None,
        client_cert: PemInput | None = None,
        client_key: PemInput | None = None,
        tls_server_name: str | None = None,
        timeout: float | None = 30.0,
        long_timeout: float | None = 600.0,
        retry: RetryPolicy = RetryPolicy(),
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        conn = connection(
            target,
            api_key=api_key,
            tls=tls,
            ca_cert=ca_cert,
            client_cert=client_cert,
            client_key=client_key,
            tls_server_name=tls_server_name,
            max_message_bytes=max_message_bytes,
        )
        options = list(conn.options) + list(channel_options)
        if conn.credentials is not None:
            self._channel = grpc.secure_channel(conn.target, conn.credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(conn.target, options=options)
        self.target = conn.target
        self.timeout = timeout
        self.long_timeout = long_timeout
        self.retry = retry
        self._metadata = conn.metadata
        self._search = pb_grpc.SearchServiceStub(self._channel)
        self._ingest = pb_grpc.IngestServiceStub(self._channel)
        self._admin = pb_grpc.AdminServiceStub(self._channel)
        self._recommend = pb_grpc.RecommendServiceStub(self._channel)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Closes the connection; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.target!r})"

    # ------------------------------------------------------------------ calls

    def _call(self, attempt: Callable[[float | None], T], timeout: float | None, retry: bool) -> T:
        """Runs ``attempt(seconds_left)`` until it succeeds, fails for good, or the deadline
        leaves no time for another try; gRPC errors become ``MmsearchError``s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        tries = 1
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                return attempt(left)
            except grpc.RpcError as e:
                err, cause = from_rpc_error(e, tries), e
            if not (retry and err.retryable and tries < self.retry.max_attempts):
                raise err from cause
            pause = self.retry.backoff(tries - 1)
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise err from cause
            time.sleep(pause)
            tries += 1

    def search(
        self,
        text: str | None = None,
        *,
        image: ImageInput | None = None,
        voice: AudioInput | None = None,
        video: VideoInput | None = None,
        vector: VectorInput | None = None,
        item_id: str | None = None,
        space: str = "",
        filter: Filter | Mapping[str, Any] | None = None,
        top_k: int = 10,
        offset: int = 0,
        min_score: float = 0.0,
        ef: int = 0,
        explain: bool = False,
        user_id: str = "",
        personalization: float = 0.0,
        mode: str | None = None,
        fusion: str | None = None,
        lexical_weight: float | None = None,
        sort: str | None = None,
        facets: bool = False,
        facet_candidates: int = 0,
        speech_language: str = "",
        timeout: float | None = None,
    ) -> SearchResult:
        """Searches with exactly one query: ``text``; ``image`` (a path, bytes or a PIL
        image); ``voice`` (a WAV path or bytes; the result's ``transcript`` says what was
        heard); ``video`` (a path or bytes: its keyframes search like photos, its soundtrack
        like a voice query, and ``transcript`` says what was said); ``vector`` (a list or numpy array, in ``space``, default the server's
        text-role space); or ``item_id`` (more like this item, excluding it, compared in
        ``space``).

        ``filter`` (a ``Filter`` or a dict with ``categories``, ``price_min``, ``price_max``,
        ``attributes``) restricts the hits; ``top_k`` and ``offset`` page through them;
        ``min_score`` drops weaker hits; ``ef`` widens the search beam (0: the server's
        default); ``explain`` attaches an ``Explanation`` (plan and per-space scores) to
        every hit. Retried on UNAVAILABLE and admission refusals.

        ``mode``: ``"vector"``, ``"lexical"`` (BM25 over title, description, category and
        attributes; one typo allowed on long words) or ``"hybrid"`` (both lists fused);
        default hybrid for text and voice, vector otherwise. Lexical and hybrid hits carry a
        ``snippet``. ``fusion`` (``"convex"``, the server default, or ``"rrf"``) and ``lexical_weight`` (0..1)
        override the server's hybrid fusion. Without a query, a ``filter`` and/or ``sort``
        (``"newest"``, ``"price_asc"``, ``"price_desc"``) browse: the matching items in that
        order, with ``SearchResult.total``. ``facets=True`` adds ``SearchResult.facets``:
        counts by category and price range over the query's top ``facet_candidates`` (0: the
        server's 200) that pass the filter, or over every match when browsing.
        ``speech_language`` (a Whisper code such as ``"zh"``): the language of a ``voice``
        query, instead of the speech model detecting it (which misjudges short clips).
        """
        req = convert.search_request(
            text=text, image=image, voice=voice, video=video, vector=vector, item_id=item_id, space=space, filter=filter,
            top_k=top_k, offset=offset, min_score=min_score, ef=ef, explain=explain, user_id=user_id,
            personalization=personalization, mode=mode, fusion=fusion, lexical_weight=lexical_weight, sort=sort,
            facets=facets, facet_candidates=facet_candidates, speech_language=speech_language,
        )
        resp = self._call(
            lambda t: self._search.Search(req, timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return convert.search_result(resp)

    def upsert(
        self,
        items: Iterable[Any],
        *,
        batch_size: int = 256,
        progress: bool = False,
        base_dir: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
    ) -> UpsertResult:
        """Writes items, streaming them in batches of ``batch_size`` (one Upsert stream per
        batch; each batch is durable when its stream is acknowledged).

        ``items`` is an iterable of ``Item``s, other dataclasses or dicts with the fields of
        an ``Item`` (the keys of a ``mmsearch ingest`` catalogue line), or a pandas DataFrame
        (columns ``attributes.<name>`` and ``vectors.<space>`` are gathered into those maps;
        empty cells count as absent). Photos given as paths are read, relative ones against
        ``base_dir`` (default: the working directory), and their paths become the item's
        ``image_uris`` unless given. ``progress=True`` shows a tqdm bar.

        Returns the accepted count and the rejected items with their positions in
        ``items`` and reasons: those the server refused, and those that could not be sent
        (unknown fields, unreadable photo). A failed batch is retried on UNAVAILABLE and
        admission refusals (upserts are idempotent); other errors raise, with the earlier
        batches written. ``timeout`` is each batch's deadline (default ``long_timeout``).
        """
        result = UpsertResult()
        bar = _batches.progress_bar(items, progress)
        deadline = self.long_timeout if timeout is None else timeout
        try:
            for batch in _batches.batches(items, batch_size, base_dir):
                summary = None
                if batch.requests:
                    reqs = batch.requests
                    summary = self._call(
                        lambda t: self._ingest.Upsert(iter(reqs), timeout=t, metadata=self._metadata), deadline, retry=True
                    )
                _batches.merge(result, batch, summary)
                bar.update(batch.count)
        finally:
            bar.close()
        result.rejected.sort(key=lambda r: r.index)
        return result

    # A str is also an Iterable[str]; the first overload wins for it.
    @overload
    def get(self, ids: str, *, timeout: float | None = None) -> Item: ...  # type: ignore[overload-overlap]

    @overload
    def get(self, ids: Iterable[str], *, timeout: float | None = None) -> list[Item | None]: ...

    def get(self, ids: str | Iterable[str], *, timeout: float | None = None) -> Item | list[Item | None]:
        """Fetches the stored item with id ``ids`` (raises ``NotFoundError`` when there is
        none), or, given several ids, a list in the same order with None for those that do
        not exist (the proto has no batch Get: one call per id). Retried on UNAVAILABLE and
        admission refusals."""
        if isinstance(ids, str):
            return self._get_one(ids, timeout)
        out: list[Item | None] = []
        for i in ids:
            try:
                out.append(self._get_one(i, timeout))
            except NotFoundError:
                out.append(None)
        return out

    def _get_one(self, item_id: str, timeout: float | None) -> Item:
        req = pb.GetRequest(id=item_id)
        resp = self._call(
            lambda t: self._ingest.Get(req, timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return convert.item(resp)

    def delete(self, ids: str | Iterable[str], *, timeout: float | None = None) -> DeleteResult:
        """Deletes items by id (at most the server's ``limits.max_delete_ids``, 10000 by
        default, per call). Returns how many were deleted and the ids that did not exist;
        raises ``NotFoundError`` when none did. Retried on UNAVAILABLE and admission refusals
        (a retry after a lost answer may then report the ids as not found)."""
        req = pb.DeleteRequest(ids=convert.ids_list(ids))
        resp = self._call(
            lambda t: self._ingest.Delete(req, timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return convert.delete_result(resp)

    def status(self, *, timeout: float | None = None) -> Status:
        """The server's state: item count, index generations, vector spaces with their layer
        sizes, models, uptime, whether a rebuild runs. Retried on UNAVAILABLE and admission
        refusals."""
        resp = self._call(
            lambda t: self._admin.Status(pb.StatusRequest(), timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return convert.status(resp)

    def rebuild(self, *, timeout: float | None = None) -> Iterator[RebuildProgress]:
        """Starts building a new index generation from the store (the server swaps it in
        when done) and returns an iterator over its progress, ending after phase "done".
        The rebuild starts at once and continues on the server even if the iterator is
        dropped; ``list(client.rebuild())`` waits for it. Never retried. ``timeout``: deadline
        of the whole stream (default ``long_timeout``)."""
        call = self._admin.Rebuild(
            pb.RebuildRequest(), timeout=self.long_timeout if timeout is None else timeout, metadata=self._metadata
        )
        return _progress(call)

    def snapshot(self, name: str | None = None, *, timeout: float | None = None) -> SnapshotInfo:
        """Asks the server to write a consistent copy of its data (store checkpoint, the index
        generation in use, a manifest) as a folder named ``name`` in its snapshot directory
        (``serve --snapshot-dir``, config ``snapshot_dir``; by default ``snapshots`` beside
        its data directory). Clients name snapshots; the server decides where they go.

        ``name`` is 1-128 characters of ``[A-Za-z0-9._-]``, not starting with '.' and without
        ".." (otherwise ``InvalidArgumentError``), and must not be taken yet
        (``AlreadyExistsError``). None (or "") lets the server name it
        ``snapshot-<UTC time>-v<last version>``. Returns the name and the snapshot's path on
        the server (``SnapshotInfo.directory``, for ``mmsearch restore`` there). A snapshot
        directory the server cannot write is ``FailedPreconditionError`` (a full disk:
        ``ResourceExhaustedError``). Paths are not accepted: a ``PathLike`` raises ``TypeError``.

        Never retried (a snapshot that outlives its call still completes on the server).
        ``timeout`` defaults to ``long_timeout``."""
        req = convert.snapshot_request(name)
        resp = self._call(
            lambda t: self._admin.Snapshot(req, timeout=t, metadata=self._metadata),
            self.long_timeout if timeout is None else timeout,
            retry=False,
        )
        return convert.snapshot_info(resp)


    # ------------------------------------------------------------------ recommendation

    def record_interactions(
        self, interactions: Iterable[Interaction | Mapping[str, Any]], *, batch_size: int = 2000, timeout: float | None = None
    ) -> RecordResult:
        """Stores shopper interactions (``Interaction``s or dicts with its fields), sending them
        in batches of ``batch_size``, one ``RecordInteractionBatch`` message each (grpcio writes
        every message of a client stream separately, which capped a stream at ~10k events/s);
        each batch is durable when acknowledged. Events the
        server refuses (unknown item, empty user, bad kind) are returned in ``rejected`` with
        their positions and reasons and do not fail the rest; one whose (``user_id``,
        ``idempotency_key``) was stored before counts as a duplicate. A failed batch is retried
        on UNAVAILABLE and admission refusals (give idempotency keys to make that exact)."""
        result = RecordResult()
        batch: list[pb.Interaction] = []
        base = 0

        def flush() -> None:
            nonlocal base
            reqs = list(batch)
            s = self._call(
                lambda t: self._recommend.RecordInteractionBatch(
                    pb.InteractionBatch(interactions=reqs), timeout=t, metadata=self._metadata
                ),
                self.long_timeout if timeout is None else timeout,
                retry=True,
            )
            r = rec.record_result(s, base)
            result.accepted += r.accepted
            result.duplicates += r.duplicates
            result.rejected.extend(r.rejected)
            base += len(reqs)
            batch.clear()

        for i in interactions:
            batch.append(rec.interaction_message(i))
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        return result

    def recommend(
        self,
        positive: Iterable[rec.Example] = (),
        negative: Iterable[rec.Example] = (),
        *,
        strategy: str = "average_vector",
        filter: Filter | Mapping[str, Any] | None = None,
        top_k: int = 10,
        offset: int = 0,
        min_score: float | None = None,
        exclude_inputs: bool = True,
        ignore_missing_ids: bool = False,
        timeout: float | None = None,
    ) -> RecommendResult:
        """Items like the ``positive`` examples and unlike the ``negative`` ones. An example
        is an item id, a vector, or a dict with one of ``item_id``, ``vector``, ``text``,
        ``image``, ``audio`` and an optional ``weight``. ``strategy``: "average_vector" (one
        query: the weighted mean of positives minus negatives), "best_score" (candidates
        around each example, scored by the best positive minus the best negative
        similarity), "collaborative" (customers who bought these also bought; item ids
        only; needs a trained model). Unknown item ids raise ``NotFoundError`` naming them,
        unless ``ignore_missing_ids``. Every hit carries its reasons. Retried on UNAVAILABLE."""
        req = rec.recommend_request(positive, negative, strategy, filter, top_k, offset, min_score, exclude_inputs, ignore_missing_ids)
        resp = self._call(
            lambda t: self._recommend.Recommend(req, timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return rec.recommend_result(resp)

    def recommend_for_user(
        self,
        user_id: str,
        *,
        top_k: int = 10,
        filter: Filter | Mapping[str, Any] | None = None,
        exclude_seen: bool = True,
        offset: int = 0,
        timeout: float | None = None,
    ) -> RecommendResult:
        """"For you": the collaborative model's neighbours of the user's history, the user's
        content vector searched in the index, and (with ``exclude_seen=False``) "buy again",
        blended; the most popular items for a user without history. Every hit carries its
        reasons (sources, and the history items that contributed most, with their shares).
        Retried on UNAVAILABLE."""
        req = rec.for_user_request(user_id, top_k, filter, exclude_seen, offset)
        resp = self._call(
            lambda t: self._recommend.RecommendForUser(req, timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return rec.recommend_result(resp)

    def delete_user_data(self, user_id: str, *, timeout: float | None = None) -> int:
        """Erases a user's interactions at once (and the user vector made from them); returns
        how many. A trained model keeps only item aggregates until the next ``train``;
        snapshots taken before keep the data. Needs the admin role."""
        req = pb.UserDataRequest(user_id=user_id)
        resp = self._call(
            lambda t: self._admin.DeleteUserData(req, timeout=t, metadata=self._metadata),
            self.long_timeout if timeout is None else timeout,
            retry=True,
        )
        return int(resp.deleted)

    def export_user_data(self, user_id: str, *, timeout: float | None = None) -> list[Interaction]:
        """A user's stored interactions, oldest first. Needs the admin role."""
        req = pb.UserDataRequest(user_id=user_id)
        resp = self._call(
            lambda t: self._admin.ExportUserData(req, timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return [rec.interaction(i) for i in resp.interactions]

    def train(self, *, timeout: float | None = None) -> Iterator[TrainProgress]:
        """Trains the recommendation model from the stored interactions and swaps it in;
        returns an iterator over the progress, ending with phase "done" (which names the new
        model version). Never retried. Needs the admin role."""
        call = self._admin.Train(pb.TrainRequest(), timeout=self.long_timeout if timeout is None else timeout, metadata=self._metadata)
        return _train_progress(call)


def _progress(call: Iterator[pb.RebuildProgress]) -> Iterator[RebuildProgress]:
    try:
        for p in call:
            yield convert.progress(p)
    except grpc.RpcError as e:
        raise from_rpc_error(e) from e
    finally:
        cancel = getattr(call, "cancel", None)
        if cancel is not None:
            cancel()


def _train_progress(call: Iterator[pb.TrainProgress]) -> Iterator[TrainProgress]:
    try:
        for p in call:
            yield rec.train_progress(p)
    except grpc.RpcError as e:
        raise from_rpc_error(e) from e
    finally:
        cancel = getattr(call, "cancel", None)
        if cancel is not None:
            cancel()
