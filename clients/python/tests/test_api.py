"""The client's surface: one method per RPC of the proto, the forms upsert takes, get of one or
many ids, delete, rebuild progress, snapshots, catalogue readers, context managers."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mmsearch
from mmsearch import _convert
from mmsearch.v1 import mmsearch_pb2 as pb

from conftest import DIM, Server, unit

V1 = unit([1.0] + [0.0] * (DIM - 1))
V2 = unit([0.0, 1.0] + [0.0] * (DIM - 2))


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_rpc_in_the_proto_has_a_client_method() -> None:
    rpcs = [(s.full_name, m) for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods]
    assert len(rpcs) >= 7
    # record_interactions sends its batches through RecordInteractionBatch (one message each);
    # the client-streamed RecordInteractions is for streaming clients (the CLI, the web page).
    covered_by = {"RecordInteractionBatch": "record_interactions"}
    for service, method in rpcs:
        name = covered_by.get(method.name, snake(method.name))
        for cls in (mmsearch.Client, mmsearch.AsyncClient):
            fn = getattr(cls, name, None)
            assert callable(fn), f"{service}/{method.name} has no {cls.__name__}.{name}()"
            assert fn.__doc__, f"{cls.__name__}.{name} has no docstring"
            if cls is mmsearch.AsyncClient:
                # Server-streamed RPCs return an async iterator; the rest are coroutines.
                assert inspect.iscoroutinefunction(fn) != method.server_streaming, name


def test_public_methods_have_docstrings() -> None:
    for cls in (mmsearch.Client, mmsearch.AsyncClient, mmsearch.RetryPolicy):
        assert cls.__doc__
        for name, fn in inspect.getmembers(cls, callable):
            if not name.startswith("_"):
                assert fn.__doc__, f"{cls.__name__}.{name}"
    for fn in (mmsearch.read_jsonl, mmsearch.read_csv):
        assert fn.__doc__


@dataclasses.dataclass
class Product:
    id: str
    title: str
    price: float
    vectors: dict[str, list[float]]


def test_upsert_takes_dicts_items_dataclasses_and_dataframes(vec_server: Server) -> None:
    frame = pd.DataFrame(
        {
            "id": ["df1", "df2"],
            "title": ["frame one", "frame two"],
            "price": [3.5, np.nan],  # an empty cell is absent: price 0
            "attributes.brand": ["Acme", None],
            "vectors.shared": [V1, V2],
        }
    )
    with mmsearch.Client(vec_server.addr) as c:
        r1 = c.upsert([{"id": "d1", "title": "dict", "attributes": {"size": 3}, "vectors": {"shared": np.array(V1)}}])
        r2 = c.upsert([mmsearch.Item(id="i1", title="item", category="c", price=2.0, vectors={"shared": V2}, text_weight=0.25)])
        r3 = c.upsert([Product("p1", "dataclass", 9.99, {"shared": V1})])
        r4 = c.upsert(frame)
        for r in (r1, r2, r3):
            assert (r.accepted, r.rejected) == (1, [])
        assert (r4.accepted, r4.rejected) == (2, [])
        assert r4.last_version > r1.last_version
        assert c.get("d1").attributes == {"size": "3"}
        i1 = c.get("i1")
        assert (i1.title, i1.category, i1.price, i1.text_weight, i1.image_weight) == ("item", "c", 2.0, 0.25, None)
        assert c.get("p1").price == 9.99
        df1, df2 = c.get(["df1", "df2"])
        assert df1 is not None and df2 is not None
        assert (df1.price, df1.attributes, df2.price, df2.attributes) == (3.5, {"brand": "Acme"}, 0.0, {})
        assert c.search(vector=V2, top_k=2).hits[0].id in ("i1", "df2")


def test_upsert_reports_rejects_in_input_order_across_batches(vec_server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    items = [
        {"id": "r0", "vectors": {"shared": V1}},
        {"id": "r1", "vectors": {"shared": [1.0, 2.0]}},  # the server rejects: wrong dimension
        {"title": "no id"},  # not sent: no id
        {"id": "r3", "vectors": {"shared": V1}},
        {"id": "r4", "colour": "red"},  # not sent: unknown field
        {"id": "r5", "images": ["does/not/exist.jpg"], "vectors": {"shared": V1}},  # not sent: no photo
        {"id": "r6", "vectors": {"shared": V2}},
        {"id": "r7", "vectors": {"shared": ["x"] * DIM}},  # not sent: not numbers
    ]
    with mmsearch.Client(vec_server.addr) as c:
        result = c.upsert(iter(items), batch_size=2, progress=True)
    assert result.accepted == 3
    assert [(r.index, r.id) for r in result.rejected] == [(1, "r1"), (2, ""), (4, "r4"), (5, "r5"), (7, "r7")]
    reasons = [r.reason for r in result.rejected]
    assert "dimension" in reasons[0] and reasons[1] == "missing id" and "colour" in reasons[2] and "exist.jpg" in reasons[3]
    assert "float32" in reasons[4]
    assert "upsert" in capsys.readouterr().err  # the tqdm bar


def test_get_one_or_many_and_delete(vec_server: Server) -> None:
    with mmsearch.Client(vec_server.addr) as c:
        c.upsert([{"id": f"g{i}", "title": f"t{i}", "vectors": {"shared": V1}} for i in range(3)])
        assert c.get("g1").title == "t1"
        many = c.get(["g0", "missing", "g2"])
        assert [x.id if x else None for x in many] == ["g0", None, "g2"]
        with pytest.raises(mmsearch.NotFoundError):
            c.get("missing")
        assert c.delete("g0") == mmsearch.DeleteResult(deleted=1, not_found=[])
        assert c.delete(["g1", "g2", "missing"]) == mmsearch.DeleteResult(deleted=2, not_found=["missing"])
        assert c.get(["g0", "g1"]) == [None, None]


def test_rebuild_yields_progress_and_status_follows(vec_server: Server) -> None:
    with mmsearch.Client(vec_server.addr) as c:
        c.upsert([{"id": f"rb{i}", "vectors": {"shared": unit([float(i + 1), 1.0] + [0.5] * (DIM - 2))}} for i in range(40)])
        before = c.status()
        progress = list(c.rebuild())
        assert progress[-1].phase == "done"
        assert {p.phase for p in progress} <= {"queued", "scanning", "building", "writing", "swapping", "done"}
        after = c.status()
        assert after.generation == progress[-1].generation > before.generation
        shared = next(s for s in after.spaces if s.name == "shared")
        assert (shared.dim, shared.metric, shared.role, shared.fresh_vectors) == (DIM, "cosine", "text", 0)
        assert shared.base_vectors >= 40 and after.items == before.items and not after.rebuilding


def test_snapshot(vec_server: Server) -> None:
    # Without --snapshot-dir the server writes snapshots to `snapshots` beside its data directory.
    snapshots = vec_server.data.parent / "snapshots"
    with mmsearch.Client(vec_server.addr) as c:
        c.upsert([{"id": "snap1", "vectors": {"shared": V1}}])
        info = c.snapshot("api-snap")
        assert info.name == "api-snap" and Path(info.directory) == snapshots / "api-snap"
        assert (snapshots / "api-snap" / "SNAPSHOT.json").is_file()
        assert info.last_version >= 1 and info.files > 0 and info.bytes > 0 and info.model_ids == []
        # Without a name the server names it after the time and the last version it holds.
        named = c.snapshot()
        assert re.fullmatch(r"snapshot-\d{8}T\d{6}Z-v\d+", named.name), named.name
        assert named.name.endswith(f"-v{named.last_version}") and named.last_version >= info.last_version
        assert Path(named.directory) == snapshots / named.name and (snapshots / named.name / "SNAPSHOT.json").is_file()
        # Paths are not names: refused before anything is sent.
        with pytest.raises(TypeError, match="takes a name"):
            c.snapshot(snapshots / "a-path")  # type: ignore[arg-type]
    assert _convert.snapshot_request(None) == pb.SnapshotRequest()
    assert _convert.snapshot_request("nightly") == pb.SnapshotRequest(name="nightly")
    assert list(inspect.signature(mmsearch.Client.snapshot).parameters) == ["self", "name", "timeout"]
    assert list(inspect.signature(mmsearch.AsyncClient.snapshot).parameters) == ["self", "name", "timeout"]


def test_search_arguments_are_checked(vec_server: Server) -> None:
    with mmsearch.Client(vec_server.addr) as c:
        with pytest.raises(ValueError, match="exactly one"):
            c.search()
        with pytest.raises(ValueError, match="exactly one"):
            c.search("text", vector=V1)
        with pytest.raises(ValueError, match="one-dimensional"):
            c.search(vector=np.ones((2, 4)))
        with pytest.raises(ValueError, match="unknown filter keys"):
            c.search(vector=V1, filter={"category": "x"})


def test_lexical_hybrid_modes_snippets_and_browse(vec_server: Server) -> None:
    with mmsearch.Client(vec_server.addr) as c:
        c.upsert([
            {"id": "lx1", "title": "Trail shoe", "description": "Grippy Vibram outsole for wet rock.", "category": "lx-shoes", "price": 90.0, "vectors": {"shared": V1}},
            {"id": "lx2", "title": "Road shoe", "description": "Light mesh upper.", "category": "lx-shoes", "price": 70.0, "vectors": {"shared": V2}},
        ])
        r = c.search("vibram", mode="lexical", explain=True)
        assert [h.id for h in r.hits] == ["lx1"]
        assert "<b>Vibram</b>" in r.hits[0].snippet
        e = r.hits[0].explanation
        assert e is not None and e.plan == "lexical" and e.lexical is not None and e.lexical.rank == 1
        # Without models the server has no text tower: hybrid (the text default) is refused.
        with pytest.raises(mmsearch.MmsearchError, match="LEXICAL"):
            c.search("vibram", mode="hybrid")
        # Vector queries are vector only.
        with pytest.raises(mmsearch.InvalidArgumentError):
            c.search(vector=V1, mode="lexical")
        with pytest.raises(ValueError, match="mode must be one of"):
            c.search("vibram", mode="bm25")
        # Browse: a filter and a sort, no query.
        b = c.search(filter={"categories": ["lx-shoes"]}, sort="price_asc")
        assert [h.id for h in b.hits] == ["lx2", "lx1"] and b.total == 2 and b.facets is None
        # Facets: exact counts when browsing, over the query's candidates otherwise.
        f = c.search(filter={"categories": ["lx-shoes"]}, sort="price_asc", facets=True).facets
        assert f is not None and f.categories == [("lx-shoes", 2)] and f.counted == 2
        assert sum(r.count for r in f.price_ranges) == 2
        for price in (70.0, 90.0):
            assert sum(1 for r in f.price_ranges if r.min <= price < (r.max or float("inf"))) == 1, f.price_ranges
        q = c.search(vector=V1, filter={"categories": ["lx-shoes"]}, facets=True, facet_candidates=50).facets
        assert q is not None and q.categories == [("lx-shoes", 2)] and q.counted == 2
    req = _convert.search_request(
        text="x", image=None, voice=None, video=None, vector=None, item_id=None, space="", filter=None, top_k=5, offset=0,
        min_score=0.0, ef=0, explain=False, mode="hybrid", fusion="convex", lexical_weight=0.25,
    )
    assert (req.mode, req.fusion, req.lexical_weight) == (pb.SEARCH_MODE_HYBRID, pb.FUSION_METHOD_CONVEX, 0.25)


def test_readers(tmp_path: Path, vec_server: Server) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"png")
    jsonl = tmp_path / "cat.jsonl"
    jsonl.write_text('{"id": "j1", "images": ["img/a.png"], "vectors": {"shared": [1,0,0,0,0,0,0,0]}}\n\n{"id": "j2", "image_uris": ["u"], "images": ["img/a.png"]}\n')
    rows = list(mmsearch.read_jsonl(jsonl))
    assert rows[0]["images"] == [str(tmp_path / "img" / "a.png")] and rows[0]["image_uris"] == ["img/a.png"]
    assert rows[1]["image_uris"] == ["u"] and len(rows) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok"}\n{oops\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        list(mmsearch.read_jsonl(bad))
    csv = tmp_path / "cat.csv"
    csv.write_text(
        "id,title,category,price,attributes.brand,vectors.shared,images\n"
        'c1,Chair,Furniture,12.5,Acme,"1,0,0,0,0,0,0,0",img/a.png\n'
        "c2,Stool,,,,0 1 0 0 0 0 0 0,\n"
    )
    rows = list(mmsearch.read_csv(csv))
    assert rows[0] == {
        "id": "c1", "title": "Chair", "category": "Furniture", "price": "12.5", "attributes.brand": "Acme",
        "vectors.shared": [1.0, 0, 0, 0, 0, 0, 0, 0], "images": [str(tmp_path / "img" / "a.png")], "image_uris": ["img/a.png"],
    }
    assert rows[1] == {"id": "c2", "title": "Stool", "vectors.shared": [0.0, 1.0, 0, 0, 0, 0, 0, 0]}
    with mmsearch.Client(vec_server.addr) as c:
        assert c.upsert(mmsearch.read_csv(csv)).accepted == 2
        c1 = c.get("c1")
        assert (c1.price, c1.category, c1.attributes, c1.image_uris) == (12.5, "Furniture", {"brand": "Acme"}, ["img/a.png"])


def test_clients_close_as_context_managers(vec_server: Server) -> None:
    c = mmsearch.Client(vec_server.addr)
    with c as same:
        assert same is c
        same.status()
    with pytest.raises(ValueError):  # grpc: "Cannot invoke RPC on closed channel!"
        c.status()
