"""AsyncClient answers as Client does: the same hits for every kind of query on the demo
catalogue, the same writes, reads, admin calls, errors and retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest

import mmsearch

from conftest import DEMO_CATALOG, DIM, Server, espeak, unit
from test_errors import FAST, Refusing, fake_server

T = TypeVar("T")
V = unit([1.0, 0.5] + [0.0] * (DIM - 2))


def run(main: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(main())  # type: ignore[arg-type]


def comparable(r: mmsearch.SearchResult) -> tuple[Any, ...]:
    # Timing differs between two calls; everything else must not.
    return (r.hits, r.transcript, r.exact)


def test_async_search_matches_sync(demo: tuple[Server, mmsearch.UpsertResult], tmp_path: Path) -> None:
    server, _ = demo
    photo = json.loads(DEMO_CATALOG.read_text().splitlines()[5])["images"][0]
    wav = espeak("wireless mouse", tmp_path / "q.wav")
    queries: list[dict[str, Any]] = [
        {"text": "camera on a tripod", "top_k": 5},
        {"text": "chair", "filter": {"categories": ["Furniture"], "price_max": 100}},
        {"image": photo, "top_k": 3, "explain": True},
        {"voice": wav, "top_k": 3},
        {"item_id": "tripod", "top_k": 4},
        {"vector": np.random.default_rng(3).standard_normal(384).astype(np.float32), "top_k": 5, "explain": True},
    ]
    with mmsearch.Client(server.addr) as sync:
        expected = [sync.search(**q) for q in queries]

    async def main() -> list[mmsearch.SearchResult]:
        async with mmsearch.AsyncClient(server.addr) as client:
            return list(await asyncio.gather(*(client.search(**q) for q in queries)))

    got = run(main)
    for q, want, have in zip(queries, expected, got):
        assert comparable(have) == comparable(want), q
    assert "mouse" in got[3].transcript.lower()


def test_async_writes_reads_and_admin_match_sync(vec_server: Server) -> None:
    items = [{"id": f"as{i}", "title": f"async {i}", "vectors": {"shared": V}} for i in range(5)] + [{"id": "as-bad", "vectors": {"shared": [1.0]}}]

    async def main() -> dict[str, Any]:
        async with mmsearch.AsyncClient(vec_server.addr) as c:
            out: dict[str, Any] = {}
            out["upsert"] = await c.upsert(items, batch_size=4)
            out["one"] = await c.get("as1")
            out["many"] = await c.get(["as0", "nope", "as4"])
            out["search"] = await c.search(vector=V, top_k=3)
            with mmsearch.Client(vec_server.addr) as sync:
                out["sync_search"] = sync.search(vector=V, top_k=3)
            out["delete"] = await c.delete(["as0", "nope"])
            out["status"] = await c.status()
            out["rebuild"] = [p async for p in c.rebuild()]
            out["snapshot"] = await c.snapshot("async-snap")
            with pytest.raises(mmsearch.NotFoundError) as e:
                await c.get("nope")
            out["error"] = e.value
            return out

    out = run(main)
    assert out["upsert"].accepted == 5 and [(r.index, r.id) for r in out["upsert"].rejected] == [(5, "as-bad")]
    assert out["one"].title == "async 1"
    assert [x.id if x else None for x in out["many"]] == ["as0", None, "as4"]
    assert comparable(out["search"]) == comparable(out["sync_search"])
    assert out["delete"] == mmsearch.DeleteResult(deleted=1, not_found=["nope"])
    assert out["rebuild"][-1].phase == "done"
    assert out["snapshot"].files > 0 and out["snapshot"].name == "async-snap"
    assert Path(out["snapshot"].directory) == vec_server.data.parent / "snapshots" / "async-snap"
    assert out["error"].request_id and out["error"].code == grpc.StatusCode.NOT_FOUND
    with mmsearch.Client(vec_server.addr) as sync:
        assert sync.get("as1") == out["one"]
        assert sync.get(["as0", "nope", "as4"])[1:] == out["many"][1:]
        assert sync.status().generation == out["rebuild"][-1].generation


@pytest.mark.parametrize("code,message,retried", [
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "ingest service stayed at its concurrency limit for 2s; retry with backoff", True),
    (grpc.StatusCode.INVALID_ARGUMENT, "top_k must be at least 1", False),
])
def test_async_errors_and_retries_match_sync(code: grpc.StatusCode, message: str, retried: bool) -> None:
    servicer = Refusing(code, message)
    server, addr = fake_server(servicer)

    async def main() -> list[mmsearch.MmsearchError]:
        errs = []
        async with mmsearch.AsyncClient(addr, retry=FAST) as c:
            calls: list[Callable[[], Awaitable[Any]]] = [
                lambda: c.search(vector=[1.0]),
                lambda: c.get("x"),
                lambda: c.delete("x"),
                lambda: c.status(),
                lambda: c.snapshot("x"),
                lambda: c.upsert([{"id": "a"}]),
            ]
            for call in calls:
                try:
                    await call()
                except mmsearch.MmsearchError as e:
                    errs.append(e)
            try:
                async for _ in c.rebuild():
                    pass
            except mmsearch.MmsearchError as e:
                errs.append(e)
        return errs

    try:
        errs = run(main)
    finally:
        server.stop(None)
    n = 3 if retried else 1
    assert len(errs) == 7 and all(type(e) is mmsearch.errors.error_class(code) and e.message == message for e in errs)
    assert [e.request_id for e in errs] == [f"fake-{r}" for r in ("Search", "Get", "Delete", "Status", "Snapshot", "Upsert", "Rebuild")]
    assert servicer.calls == {"Search": n, "Get": n, "Delete": n, "Status": n, "Upsert": n, "Snapshot": 1, "Rebuild": 1}
