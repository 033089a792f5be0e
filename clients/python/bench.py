#!/usr/bin/env python3
"""Benchmarks the Python client against a local server (no models, 384-d vectors):

1. upsert throughput (items/s): ``Client.upsert`` of dicts with numpy vectors vs the Rust CLI
   ``mmsearch ingest`` of the same items as a JSONL file, batches of 256, interleaved runs;
2. single-client vector search latency (top_k 10, hits hydrated with their items):
   ``Client.search`` vs a raw generated stub on the same server, interleaved runs;
3. recording interactions (events/s): ``Client.record_interactions`` (one
   ``RecordInteractionBatch`` message per 2,000 events) vs a raw stub streaming the same
   prebuilt ``Interaction`` messages through ``RecordInteractions`` (one stream per 2,000),
   interleaved runs.

Medians over the runs are reported with the machine's load average. Run it from the venv that
test.sh makes:

    clients/python/.venv/bin/python clients/python/bench.py [--items 1000] [--queries 2000]

The server binary is found as the tests find it ($MMSEARCH_BIN, $CARGO_TARGET_DIR/release,
target/release, ~/.cache/mmsearch-target/release).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

import mmsearch
from mmsearch.v1 import mmsearch_pb2 as pb
from mmsearch.v1 import mmsearch_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[2]
CATEGORIES = ["Computers", "Equipment", "Footwear", "Furniture", "Photo", "Plants"]


def find_binary() -> Path:
    candidates = []
    if os.environ.get("MMSEARCH_BIN"):
        candidates.append(Path(os.environ["MMSEARCH_BIN"]))
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "mmsearch")
    candidates += [REPO / "target" / "release" / "mmsearch", Path.home() / ".cache" / "mmsearch-target" / "release" / "mmsearch"]
    for c in candidates:
        if c.is_file():
            return c
    sys.exit("no mmsearch binary; set MMSEARCH_BIN")


def start_server(binary: Path, root: Path, dim: int, cpus: str | None = None) -> tuple[subprocess.Popen[str], str]:
    config = root / "config.toml"
    # A mutable layer large enough that no background rebuild starts during the runs.
    config.write_text(f'[[spaces]]\nname = "shared"\ndim = {dim}\nmetric = "cosine"\nrole = "text"\n\n[index]\nmax_fresh = 10000000\n')
    pin = ["taskset", "-c", cpus] if cpus else []
    proc = subprocess.Popen(
        [*pin, str(binary), "serve", "--no-models", "--insecure-no-auth", "--config", str(config), "--data-dir", str(root / "data"), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, RUST_LOG="warn"),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("mmsearch listening on "):
            threading.Thread(target=lambda: [None for _ in proc.stdout or ()], daemon=True).start()
            return proc, line.split()[-1]
    sys.exit("server did not start")


def items(prefix: str, vectors: np.ndarray) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}-{i}",
            "title": f"product {i}",
            "description": "a benchmark item with a short description",
            "category": CATEGORIES[i % len(CATEGORIES)],
            "price": float(5 + i % 500),
            "attributes": {"brand": f"brand{i % 50}", "colour": ["red", "green", "blue"][i % 3]},
            "vectors": {"shared": v},
        }
        for i, v in enumerate(vectors)
    ]


def bench_upsert_python(addr: str, rows: list[dict[str, Any]]) -> float:
    with mmsearch.Client(addr) as client:
        started = time.perf_counter()
        result = client.upsert(rows, batch_size=256)
        secs = time.perf_counter() - started
    assert result.accepted == len(rows), result.rejected[:3]
    return len(rows) / secs


def bench_upsert_cli(binary: Path, addr: str, rows: list[dict[str, Any]], path: Path) -> tuple[float, float]:
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps({**r, "vectors": {"shared": r["vectors"]["shared"].tolist()}}) + "\n")
    started = time.perf_counter()
    out = subprocess.run([str(binary), "ingest", "--batch", "256", "--server", f"http://{addr}", str(path)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    m = re.search(r"ingested (\d+) items in [\d.]+s \((\d+) items/s\)", out.stdout)
    assert m and int(m.group(1)) == len(rows), out.stdout
    return float(m.group(2)), len(rows) / wall


def bench_record(addr: str, item_ids: list[str], n: int, run: int, per_call: int = 2000) -> tuple[float, float]:
    """(client events/s, raw streamed events/s) for n events each, new idempotency keys per run."""
    kinds = ["view", "click", "cart", "purchase"]
    events = [
        mmsearch.Interaction(f"u{i % 500}", item_ids[i % len(item_ids)], kinds[i % 4], timestamp_ms=1_700_000_000_000 + i,
                             idempotency_key=f"c{run}-{i}")
        for i in range(n)
    ]
    with mmsearch.Client(addr) as client:
        started = time.perf_counter()
        result = client.record_interactions(events, batch_size=per_call)
        client_rate = n / (time.perf_counter() - started)
    assert result.accepted == n and not result.duplicates, result.rejected[:3]
    kind = {"view": pb.VIEW, "click": pb.CLICK, "cart": pb.CART, "purchase": pb.PURCHASE}
    msgs = [
        pb.Interaction(user_id=e.user_id, item_id=e.item_id, kind=kind[e.kind], timestamp_ms=e.timestamp_ms,
                       idempotency_key=f"s{run}-{i}")
        for i, e in enumerate(events)
    ]
    with grpc.insecure_channel(addr) as channel:
        stub = pb_grpc.RecommendServiceStub(channel)
        started = time.perf_counter()
        for at in range(0, n, per_call):
            s = stub.RecordInteractions(iter(msgs[at:at + per_call]))
            assert s.accepted == len(msgs[at:at + per_call]) and not s.rejected
        raw_rate = n / (time.perf_counter() - started)
    return client_rate, raw_rate


def search_modes(addr: str) -> dict[str, Any]:
    """One query function per mode, each returning the hits' count."""
    channel = grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", 32 << 20)])
    stub = pb_grpc.SearchServiceStub(channel)
    client = mmsearch.Client(addr)

    def request(q: np.ndarray) -> pb.SearchRequest:
        return pb.SearchRequest(vector=pb.Vector(space="", values=q.tolist()), top_k=10)

    def raw(q: np.ndarray, ready: pb.SearchRequest) -> int:
        # The strictest baseline: the request was made before the clock started.
        resp = stub.Search(ready, timeout=30)
        assert resp.hits[0].item.title
        return len(resp.hits)

    def raw_building(q: np.ndarray, ready: pb.SearchRequest) -> int:
        # As a stub user writes it: the request built from the numpy vector in the loop.
        resp = stub.Search(request(q), timeout=30)
        assert resp.hits[0].item.title
        return len(resp.hits)

    def via_client(q: np.ndarray, ready: pb.SearchRequest) -> int:
        result = client.search(vector=q, top_k=10)
        assert result.hits[0].item is not None and result.hits[0].item.title
        return len(result.hits)

    return {"raw": raw, "raw_building": raw_building, "client": via_client, "_close": [channel.close, client.close], "_request": request}


def bench_search(modes: dict[str, Any], queries: np.ndarray, chunk: int = 50) -> dict[str, float]:
    """Mean seconds per query of each mode over all queries, the modes taking turns every
    ``chunk`` queries so that a change in the machine's load hits them alike."""
    names = [n for n in modes if not n.startswith("_")]
    ready = [modes["_request"](q) for q in queries]
    spent = dict.fromkeys(names, 0.0)
    for start in range(0, len(queries), chunk):
        for name in names:
            fn = modes[name]
            t = time.perf_counter()
            for i in range(start, min(start + chunk, len(queries))):
                assert fn(queries[i], ready[i]) == 10
            spent[name] += time.perf_counter() - t
    return {n: s / len(queries) for n, s in spent.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1000, help="items per upsert run (each run writes new ids)")
    ap.add_argument("--queries", type=int, default=2000, help="queries per search run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--events", type=int, default=20000, help="interactions per recording run and side")
    ap.add_argument("--pin", action="store_true", help="server on CPU 0, this client on CPU 1 (less noise on 2 cores)")
    args = ap.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {1})
    binary = find_binary()
    rng = np.random.default_rng(42)

    def unit(n: int) -> np.ndarray:
        v = rng.standard_normal((n, args.dim)).astype(np.float32)
        out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mmsearch-bench-") as tmp:
        proc, addr = start_server(binary, Path(tmp), args.dim, "0" if args.pin else None)
        try:
            py_rates, cli_rates, cli_walls = [], [], []
            for run in range(args.runs):
                vectors = unit(args.items)
                py_rates.append(bench_upsert_python(addr, items(f"py{run}", vectors)))
                rate, wall = bench_upsert_cli(binary, addr, items(f"cli{run}", vectors), Path(tmp) / f"cli{run}.jsonl")
                cli_rates.append(rate)
                cli_walls.append(wall)
                print(f"upsert run {run + 1}: python {py_rates[-1]:.0f} items/s, cli {rate:.0f} items/s ({wall:.0f} with process start)", flush=True)

            ids = [r["id"] for r in items("py0", unit(args.items))]
            rec_client, rec_raw = [], []
            for run in range(args.runs):
                batched, streamed = bench_record(addr, ids, args.events, run)
                rec_client.append(batched)
                rec_raw.append(streamed)
                print(f"record run {run + 1}: client (batch) {batched:.0f} events/s, raw stub stream {streamed:.0f} events/s", flush=True)

            # Searches run on a built index generation, as a served catalogue's do.
            started = time.perf_counter()
            with mmsearch.Client(addr) as admin:
                list(admin.rebuild())
                timing = admin.search(vector=unit(1)[0], top_k=10).timing
            print(f"rebuild of {2 * args.runs * args.items} items: {time.perf_counter() - started:.1f}s; "
                  f"server search {timing.search_us} µs + hydrate {timing.hydrate_us} µs", flush=True)
            queries = unit(args.queries)
            modes = search_modes(addr)
            bench_search(modes, queries[:200])  # warm-up
            raw, naive, client = [], [], []
            for run in range(args.runs):
                r = bench_search(modes, queries)
                raw.append(r["raw"])
                naive.append(r["raw_building"])
                client.append(r["client"])
                print(
                    f"search run {run + 1}: raw stub {raw[-1] * 1e6:.0f} µs (building each request: {naive[-1] * 1e6:.0f} µs), "
                    f"client {client[-1] * 1e6:.0f} µs ({client[-1] / raw[-1] - 1:+.1%})",
                    flush=True,
                )
            for close in modes["_close"]:
                close()
        finally:
            proc.terminate()
            proc.wait(30)
    load_after = os.getloadavg()

    med = statistics.median
    summary = {
        "items_total": 2 * args.runs * args.items,
        "upsert_python_items_per_s": round(med(py_rates)),
        "upsert_cli_items_per_s": round(med(cli_rates)),
        "upsert_cli_items_per_s_with_process_start": round(med(cli_walls)),
        "record_client_batch_events_per_s": round(med(rec_client)),
        "record_raw_stream_events_per_s": round(med(rec_raw)),
        "search_raw_stub_us": round(med(raw) * 1e6, 1),
        "search_raw_stub_building_requests_us": round(med(naive) * 1e6, 1),
        "search_client_us": round(med(client) * 1e6, 1),
        "search_client_overhead": round(med(client) / med(raw) - 1, 4),
        "search_client_overhead_per_run": [round(c / r - 1, 4) for c, r in zip(client, raw)],
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(summary, indent=2))
    print(
        f"\nupsert: python {summary['upsert_python_items_per_s']} items/s vs mmsearch ingest {summary['upsert_cli_items_per_s']} items/s"
        f"\nrecord: client (RecordInteractionBatch) {summary['record_client_batch_events_per_s']} events/s vs raw stub stream (RecordInteractions)"
        f" {summary['record_raw_stream_events_per_s']} events/s"
        f"\nsearch (top_k 10, hydrated): client {summary['search_client_us']} µs vs raw stub {summary['search_raw_stub_us']} µs"
        f" with prebuilt requests = {summary['search_client_overhead']:+.1%}"
        f" ({summary['search_raw_stub_building_requests_us']} µs building each request from numpy; medians of {args.runs} interleaved runs)"
        f"\nload average {load_before[0]:.2f} before, {load_after[0]:.2f} after, {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
