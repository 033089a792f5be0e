"""The asyncio client (grpc.aio), with the same methods as ``Client``."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast, overload

import grpc
import grpc.aio

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

__all__ = ["AsyncClient"]

T = TypeVar("T")

#: Concurrent Get calls of ``get`` with several ids (the server's ingest service admits 16 at
#: once by default).
GET_CONCURRENCY = 16


class AsyncClient:
    """The asyncio counterpart of ``Client``: the same arguments and methods, as coroutines
    (``rebuild`` returns an async iterator). Create it inside a running event loop; use it
    as ``async with AsyncClient(...) as client:`` or ``await client.close()``.
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
            self._channel = grpc.aio.secure_channel(conn.target, conn.credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(conn.target, options=options)
        self.target = conn.target
        self.timeout = timeout
        self.long_timeout = long_timeout
        self.retry = retry
        self._metadata = conn.metadata
        # The generated classes serve both channel kinds; the async stub types describe
        # what they return on an aio channel.
        self._search = cast("pb_grpc.SearchServiceAsyncStub", pb_grpc.SearchServiceStub(self._channel))
        self._ingest = cast("pb_grpc.IngestServiceAsyncStub", pb_grpc.IngestServiceStub(self._channel))
        self._admin = cast("pb_grpc.AdminServiceAsyncStub", pb_grpc.AdminServiceStub(self._channel))
        self._recommend = cast("pb_grpc.RecommendServiceAsyncStub", pb_grpc.RecommendServiceStub(self._channel))

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Closes the connection; calls in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient({self.target!r})"

    # ------------------------------------------------------------------ calls

    async def _call(self, attempt: Callable[[float | None], Awaitable[T]], timeout: float | None, retry: bool) -> T:
        """``Client._call`` for coroutines: retries by the policy within one deadline."""
        deadline = None if timeout is None else time.monotonic() + timeout
        tries = 1
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                return await attempt(left)
            except grpc.RpcError as e:
                err, cause = from_rpc_error(e, tries), e
            if not (retry and err.retryable and tries < self.retry.max_attempts):
                raise err from cause
            pause = self.retry.backoff(tries - 1)
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise err from cause
            await asyncio.sleep(pause)
            tries += 1

    async def search(
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
        """Searches with exactly one query of ``text``, ``image``, ``voice``, ``video``, ``vector`` or
        ``item_id``; see ``Client.search``."""
        req = convert.search_request(
            text=text, image=image, voice=voice, video=video, vector=vector, item_id=item_id, space=space, filter=filter,
            top_k=top_k, offset=offset, min_score=min_score, ef=ef, explain=explain, user_id=user_id,
            personalization=personalization, mode=mode, fusion=fusion, lexical_weight=lexical_weight, sort=sort,
            facets=facets, facet_candidates=facet_candidates, speech_language=speech_language,
        )
        resp = await self._call(
            lambda t: self._search.Search(req, timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return convert.search_result(resp)

    async def upsert(
        self,
        items: Iterable[Any],
        *,
        batch_size: int = 256,
        progress: bool = False,
        base_dir: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
    ) -> UpsertResult:
        """Writes items in batches of ``batch_size``, one Upsert stream per batch, and returns
        the accepted count and the rejects; see ``Client.upsert``."""
        result = UpsertResult()
        bar = _batches.progress_bar(items, progress)
        deadline = self.long_timeout if timeout is None else timeout
        try:
            for batch in _batches.batches(items, batch_size, base_dir):
                summary = None
                if batch.requests:
                    reqs = batch.requests
                    summary = await self._call(
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
    async def get(self, ids: str, *, timeout: float | None = None) -> Item: ...  # type: ignore[overload-overlap]

    @overload
    async def get(self, ids: Iterable[str], *, timeout: float | None = None) -> list[Item | None]: ...

    async def get(self, ids: str | Iterable[str], *, timeout: float | None = None) -> Item | list[Item | None]:
        """Fetches one item (``NotFoundError`` when missing) or, given several ids, a list in
        the same order with None for missing ones, fetched concurrently
        (``GET_CONCURRENCY`` at a time); see ``Client.get``."""
        if isinstance(ids, str):
            return await self._get_one(ids, timeout)
        gate = asyncio.Semaphore(GET_CONCURRENCY)

        async def one(item_id: str) -> Item | None:
            async with gate:
                try:
                    return await self._get_one(item_id, timeout)
                except NotFoundError:
                    return None

        return list(await asyncio.gather(*(one(i) for i in ids)))

    async def _get_one(self, item_id: str, timeout: float | None) -> Item:
        req = pb.GetRequest(id=item_id)
        resp = await self._call(
            lambda t: self._ingest.Get(req, timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return convert.item(resp)

    async def delete(self, ids: str | Iterable[str], *, timeout: float | None = None) -> DeleteResult:
        """Deletes items by id; see ``Client.delete``."""
        req = pb.DeleteRequest(ids=convert.ids_list(ids))
        resp = await self._call(
            lambda t: self._ingest.Delete(req, timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return convert.delete_result(resp)

    async def status(self, *, timeout: float | None = None) -> Status:
        """The server's state; see ``Client.status``."""
        resp = await self._call(
            lambda t: self._admin.Status(pb.StatusRequest(), timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return convert.status(resp)

    def rebuild(self, *, timeout: float | None = None) -> AsyncIterator[RebuildProgress]:
        """Starts a rebuild and returns an async iterator over its progress (``async for p in
        client.rebuild()``); see ``Client.rebuild``. Never retried."""
        call = self._admin.Rebuild(
            pb.RebuildRequest(), timeout=self.long_timeout if timeout is None else timeout, metadata=self._metadata
        )
        return _progress(call)

    async def snapshot(self, name: str | None = None, *, timeout: float | None = None) -> SnapshotInfo:
        """Writes a snapshot named ``name`` (None: the server names it) under the server's
        snapshot directory; see ``Client.snapshot``. Never retried."""
        req = convert.snapshot_request(name)
        resp = await self._call(
            lambda t: self._admin.Snapshot(req, timeout=t, metadata=self._metadata),
            self.long_timeout if timeout is None else timeout,
            retry=False,
        )
        return convert.snapshot_info(resp)


    # ------------------------------------------------------------------ recommendation

    async def record_interactions(
        self, interactions: Iterable[Interaction | Mapping[str, Any]], *, batch_size: int = 2000, timeout: float | None = None
    ) -> RecordResult:
        """Stores shopper interactions in batches; see ``Client.record_interactions``."""
        result = RecordResult()
        batch: list[pb.Interaction] = []
        base = 0

        async def flush() -> None:
            nonlocal base
            reqs = list(batch)
            s = await self._call(
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
                await flush()
        if batch:
            await flush()
        return result

    async def recommend(
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
        """Items like the positive examples and unlike the negative ones; see ``Client.recommend``."""
        req = rec.recommend_request(positive, negative, strategy, filter, top_k, offset, min_score, exclude_inputs, ignore_missing_ids)
        resp = await self._call(
            lambda t: self._recommend.Recommend(req, timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return rec.recommend_result(resp)

    async def recommend_for_user(
        self,
        user_id: str,
        *,
        top_k: int = 10,
        filter: Filter | Mapping[str, Any] | None = None,
        exclude_seen: bool = True,
        offset: int = 0,
        timeout: float | None = None,
    ) -> RecommendResult:
        """"For you" recommendations with reasons; see ``Client.recommend_for_user``."""
        req = rec.for_user_request(user_id, top_k, filter, exclude_seen, offset)
        resp = await self._call(
            lambda t: self._recommend.RecommendForUser(req, timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return rec.recommend_result(resp)

    async def delete_user_data(self, user_id: str, *, timeout: float | None = None) -> int:
        """Erases a user's interactions; see ``Client.delete_user_data``."""
        req = pb.UserDataRequest(user_id=user_id)
        resp = await self._call(
            lambda t: self._admin.DeleteUserData(req, timeout=t, metadata=self._metadata),
            self.long_timeout if timeout is None else timeout,
            retry=True,
        )
        return int(resp.deleted)

    async def export_user_data(self, user_id: str, *, timeout: float | None = None) -> list[Interaction]:
        """A user's stored interactions, oldest first; see ``Client.export_user_data``."""
        req = pb.UserDataRequest(user_id=user_id)
        resp = await self._call(
            lambda t: self._admin.ExportUserData(req, timeout=t, metadata=self._metadata),
            self.timeout if timeout is None else timeout,
            retry=True,
        )
        return [rec.interaction(i) for i in resp.interactions]

    def train(self, *, timeout: float | None = None) -> AsyncIterator[TrainProgress]:
        """Trains the recommendation model; an async iterator over its progress; see
        ``Client.train``. Never retried."""
        call = self._admin.Train(pb.TrainRequest(), timeout=self.long_timeout if timeout is None else timeout, metadata=self._metadata)
        return _train_progress(call)


async def _progress(call: grpc.aio.UnaryStreamCall[pb.RebuildRequest, pb.RebuildProgress]) -> AsyncIterator[RebuildProgress]:
    try:
        async for p in call:
            yield convert.progress(p)
    except grpc.RpcError as e:
        raise from_rpc_error(e) from e
    finally:
        call.cancel()


async def _train_progress(call: grpc.aio.UnaryStreamCall[pb.TrainRequest, pb.TrainProgress]) -> AsyncIterator[TrainProgress]:
    try:
        async for p in call:
            yield rec.train_progress(p)
    except grpc.RpcError as e:
        raise from_rpc_error(e) from e
    finally:
        call.cancel()
