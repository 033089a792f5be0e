"""Recommendation through the client: interactions in (with rejects), training progress,
"for you" with reasons, popularity for a newcomer, recommendations by examples, personalised
search whose explanation adds up, export and erasure; the async client the same way."""

from __future__ import annotations

import asyncio

import pytest

import mmsearch

from conftest import DIM, Server, space_config, unit


def vec(i: int) -> list[float]:
    v = [0.05] * DIM
    v[i % DIM] = 1.0
    return unit(v)


@pytest.fixture(scope="module")
def shop(start: object) -> Server:
    server: Server = start(space_config(), "--insecure-no-auth")  # type: ignore[operator]
    with mmsearch.Client(server.addr) as c:
        c.upsert([{"id": f"p{i}", "title": f"product {i}", "category": "a" if i < 3 else "b", "vectors": {"shared": vec(i)}} for i in range(6)])
        events = []
        for u in range(12):
            group = [0, 1, 2] if u % 2 == 0 else [3, 4, 5]
            for t, i in enumerate(group):
                if (u // 2) % 3 != t:
                    events.append({"user_id": f"s{u}", "item_id": f"p{i}", "kind": "purchase", "timestamp_ms": 1000 + t})
        r = c.record_interactions(events, batch_size=7)
        assert (r.accepted, r.rejected) == (len(events), [])
        progress = list(c.train())
        assert progress[-1].phase == "done" and progress[-1].model_version >= 1 and progress[-1].algorithm == "ease"
    return server


def test_record_rejects_and_dedups(shop: Server) -> None:
    with mmsearch.Client(shop.addr) as c:
        r = c.record_interactions(
            [
                mmsearch.Interaction("py-user", "p0", "view", idempotency_key="k1"),
                {"user_id": "py-user", "item_id": "missing", "kind": "view"},
                mmsearch.Interaction("py-user", "p0", "teleport"),
                mmsearch.Interaction("py-user", "p0", "view", idempotency_key="k1"),
            ],
            batch_size=3,
        )
        assert (r.accepted, r.duplicates) == (2, 1)
        assert [x.index for x in r.rejected] == [1, 2]
        assert "unknown item" in r.rejected[0].reason
        assert [i.item_id for i in c.export_user_data("py-user")] == ["p0"]
        assert c.delete_user_data("py-user") == 1
        assert c.export_user_data("py-user") == []


def test_for_user_examples_and_personalised_search(shop: Server) -> None:
    with mmsearch.Client(shop.addr) as c:
        c.record_interactions([mmsearch.Interaction("py-bob", "p3", "purchase", timestamp_ms=5000)])
        r = c.recommend_for_user("py-bob", top_k=2)
        assert {h.id for h in r.hits} == {"p4", "p5"}
        top = r.hits[0]
        assert abs(sum(x.contribution for x in top.reasons) - top.score) < 1e-5
        cf = next(x for x in top.reasons if x.source == "collaborative")
        assert (cf.because[0].item_id, cf.because[0].kind) == ("p3", "purchase")
        assert all(h.reasons[0].source == "popularity" for h in c.recommend_for_user("py-nobody", top_k=3).hits)
        for strategy in ("average_vector", "best_score", "collaborative"):
            hits = c.recommend(["p0"], strategy=strategy, top_k=2).hits
            assert hits and all(h.id != "p0" for h in hits), strategy
        with pytest.raises(mmsearch.NotFoundError, match="ghost"):
            c.recommend(["p0", "ghost"])
        assert len(c.recommend(["p0", "ghost"], ignore_missing_ids=True, top_k=2).hits) == 2
        with pytest.raises(mmsearch.InvalidArgumentError):
            c.recommend_for_user("", top_k=3)
        res = c.search(vector=vec(0), top_k=6, explain=True, user_id="py-bob", personalization=0.5)
        for h in res.hits:
            assert h.explanation is not None
            assert abs(h.explanation.offset + sum(p[3] for p in h.explanation.parts) - h.score) < 1e-5


def test_async_client_recommends(shop: Server) -> None:
    async def run() -> None:
        async with mmsearch.AsyncClient(shop.addr) as c:
            r = await c.record_interactions([mmsearch.Interaction("py-async", "p1", "click")])
            assert r.accepted == 1
            hits = (await c.recommend_for_user("py-async", top_k=2)).hits
            assert hits and all(h.id != "p1" for h in hits)
            assert (await c.recommend(["p1"], top_k=1)).hits
            assert [p.phase async for p in c.train()][-1] == "done"
            assert len(await c.export_user_data("py-async")) == 1
            assert await c.delete_user_data("py-async") == 1

    asyncio.run(run())
