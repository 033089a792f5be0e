#!/usr/bin/env python3
"""Protocol A (#11) through a running server: loads the items and training events that
reference.py wrote (UpsertStream, RecordInteractions), trains (AdminService.Train), then asks
RecommendForUser(top_k 10) for every user and scores the held-out item exactly as
reference.py scores its baselines (HR@10, NDCG@10; training items excluded by the server's
exclude_seen). Prints one JSON object: metrics, latencies, events/s, training time.

usage: protocol_a.py --addr 127.0.0.1:PORT --run DIR [--load] [--label NAME]
"""
import argparse, json, math, os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python", "src"))
import grpc  # noqa: E402
from mmsearch.v1 import mmsearch_pb2 as pb, mmsearch_pb2_grpc as rpc  # noqa: E402

KINDS = {"view": pb.VIEW, "click": pb.CLICK, "cart": pb.CART, "purchase": pb.PURCHASE, "dwell": pb.DWELL}


def chunks(it, n):
    buf = []
    for x in it:
        buf.append(x)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


def load(channel, run):
    ingest = rpc.IngestServiceStub(channel)
    rec = rpc.RecommendServiceStub(channel)
    admin = rpc.AdminServiceStub(channel)
    out = {}
    with open(os.path.join(run, "items.jsonl")) as f:
        items = [json.loads(l) for l in f]
    t = time.perf_counter()
    s = ingest.Upsert(iter(pb.UpsertRequest(item=pb.Item(id=i["id"], title=i["title"], description=i["description"],
                                                          category=i["category"])) for i in items))
    out["items"] = s.accepted
    out["upsert_s"] = time.perf_counter() - t
    with open(os.path.join(run, "events.jsonl")) as f:
        events = [json.loads(l) for l in f]
    t = time.perf_counter()
    accepted = 0
    for batch in chunks(events, 5000):
        s = rec.RecordInteractions(iter(pb.Interaction(user_id=e["user_id"], item_id=e["item_id"], kind=KINDS[e["kind"]],
                                                       timestamp_ms=e["timestamp_ms"]) for e in batch))
        accepted += s.accepted
        assert not s.rejected, s.rejected[:3]
    secs = time.perf_counter() - t
    out.update(events=accepted, record_s=secs, events_per_s=accepted / secs)
    t = time.perf_counter()
    last = None
    for p in admin.Train(pb.TrainRequest()):
        last = p
    out.update(train_s=time.perf_counter() - t, model_version=last.model_version, algorithm=last.algorithm,
               model_items=last.items, model_users=last.users)
    return out


def evaluate(channel, run, k=10):
    rec = rpc.RecommendServiceStub(channel)
    with open(os.path.join(run, "test.json")) as f:
        test = json.load(f)
    hr = ndcg = 0.0
    lat = []
    for u, held in sorted(test.items(), key=lambda x: int(x[0])):
        t = time.perf_counter()
        r = rec.RecommendForUser(pb.RecommendForUserRequest(user_id=u, top_k=k))
        lat.append(time.perf_counter() - t)
        ids = [h.id for h in r.hits]
        if held in ids:
            rank = ids.index(held)
            hr += 1
            ndcg += 1 / math.log2(rank + 2)
    lat.sort()
    n = len(test)
    return {"hr10": hr / n, "ndcg10": ndcg / n, "users": n,
            "p50_ms": 1000 * lat[n // 2], "p99_ms": 1000 * lat[min(n - 1, int(n * 0.99))]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--load", action="store_true")
    ap.add_argument("--label", default="server")
    a = ap.parse_args()
    channel = grpc.insecure_channel(a.addr, options=[("grpc.max_receive_message_length", 64 << 20)])
    out = {"label": a.label}
    if a.load:
        out["load"] = load(channel, a.run)
    out["eval"] = evaluate(channel, a.run)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
