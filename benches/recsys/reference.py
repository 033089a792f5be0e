#!/usr/bin/env python3
"""Protocol A (#11) on MovieLens 100k: the reference baselines, and the data for the server.

Leave-last-out per user, ordered by (timestamp, item_id); every item is ranked, the user's
training items excluded; HR@10 and NDCG@10 over all users. Baselines: popularity, item-kNN
(cosine, k 200), EASE (lambda 200), implicit ALS (32 factors, 3 seeds averaged), content
TF-IDF user mean (title words, year, genres). Writes items.jsonl / events.jsonl / test.json
into --out for the run through the server (protocol_a.py), and the metrics as JSON.
Timing and peak memory of each model's training are reported beside the metrics.

usage: reference.py --data ~/.cache/mmsearch/recsys/ml-100k --out DIR
"""
import argparse, json, math, os, re, resource, time
from collections import Counter, defaultdict

import numpy as np
import scipy.sparse as sp

K = 10


def load(data):
    rows = []
    with open(os.path.join(data, "ml-100k.inter")) as f:
        next(f)
        for line in f:
            u, i, r, t = line.rstrip("\n").split("\t")
            rows.append((u, i, float(r), int(float(t))))
    items = {}
    with open(os.path.join(data, "ml-100k.item"), encoding="utf-8", errors="replace") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            iid, title, year, genres = (parts + ["", "", ""])[:4]
            items[iid] = {"title": title.strip(), "year": year.strip(), "genres": genres.split()}
    return rows, items


def split(rows):
    by_user = defaultdict(list)
    for u, i, r, t in rows:
        by_user[u].append((t, i))
    train, test = {}, {}
    for u, evs in by_user.items():
        evs.sort(key=lambda x: (x[0], x[1]))
        test[u] = evs[-1][1]
        train[u] = evs[:-1]
    return train, test


def evaluate(scores, users, uidx, iidx, X, test):
    """scores: users x items dense array (rows in `users` order)."""
    hr = ndcg = 0.0
    for row, u in enumerate(users):
        s = scores[row].astype(np.float64).copy()
        s[X[uidx[u]].indices] = -np.inf
        t = iidx[test[u]]
        rank = int((s > s[t]).sum())
        if rank < K:
            hr += 1
            ndcg += 1.0 / math.log2(rank + 2)
    n = len(users)
    return {"hr10": hr / n, "ndcg10": ndcg / n}


def timed(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows, items = load(args.data)
    train, test = split(rows)
    users = sorted(train, key=int)
    item_ids = sorted(items, key=int)
    uidx = {u: n for n, u in enumerate(users)}
    iidx = {i: n for n, i in enumerate(item_ids)}
    r, c = [], []
    for u, evs in train.items():
        for t, i in evs:
            r.append(uidx[u]); c.append(iidx[i])
    X = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(users), len(item_ids)))
    X.data[:] = 1.0
    X.sum_duplicates(); X.data[:] = 1.0
    Xd = X.toarray()
    results = {}

    pop, secs = timed(lambda: np.asarray(X.sum(axis=0)).ravel())
    results["popularity"] = {**evaluate(np.tile(pop, (len(users), 1)), users, uidx, iidx, X, test), "train_s": secs}

    def knn():
        C = (X.T @ X).toarray().astype(np.float64)
        n = np.diag(C).copy()
        S = C / np.sqrt(np.outer(n, n) + 1e-12)
        np.fill_diagonal(S, 0)
        keep = 200
        idx = np.argpartition(-S, keep, axis=1)[:, :keep]
        Sk = np.zeros_like(S)
        rows_ = np.arange(S.shape[0])[:, None]
        Sk[rows_, idx] = S[rows_, idx]
        return Sk
    Sk, secs = timed(knn)
    results["item_knn"] = {**evaluate(Xd @ Sk, users, uidx, iidx, X, test), "train_s": secs}

    def ease(lam=200.0):
        G = (X.T @ X).toarray().astype(np.float64)
        G[np.diag_indices_from(G)] += lam
        P = np.linalg.inv(G)
        B = -P / np.diag(P)
        np.fill_diagonal(B, 0)
        return B
    B, secs = timed(ease)
    results["ease"] = {**evaluate(Xd @ B, users, uidx, iidx, X, test), "train_s": secs}

    def als(seed, f=32, reg=0.1, alpha=10.0, iters=15):
        rng = np.random.default_rng(seed)
        U = rng.normal(0, 0.01, (X.shape[0], f)); V = rng.normal(0, 0.01, (X.shape[1], f))
        Xt = X.T.tocsr()
        def half(A, M):
            AtA = A.T @ A
            out = np.zeros((M.shape[0], f))
            for row in range(M.shape[0]):
                idx = M[row].indices
                Ai = A[idx]
                lhs = AtA + alpha * Ai.T @ Ai + reg * np.eye(f)
                out[row] = np.linalg.solve(lhs, (1 + alpha) * Ai.sum(axis=0))
            return out
        for _ in range(iters):
            U = half(V, X); V = half(U, Xt)
        return U @ V.T
    runs = []
    secs_all = 0.0
    for seed in range(args.seeds):
        S, secs = timed(lambda: als(seed))
        secs_all += secs
        runs.append(evaluate(S, users, uidx, iidx, X, test))
    results["als"] = {"hr10": float(np.mean([x["hr10"] for x in runs])), "ndcg10": float(np.mean([x["ndcg10"] for x in runs])),
                      "seeds": runs, "train_s": secs_all / args.seeds}

    def tfidf():
        docs = []
        for i in item_ids:
            it = items[i]
            words = re.findall(r"[a-z0-9]+", re.sub(r"\(\d{4}\)", "", it["title"]).lower())
            docs.append(words + ["year_" + it["year"]] + ["genre_" + g.lower() for g in it["genres"]])
        vocab = {}
        for d in docs:
            for w in d:
                vocab.setdefault(w, len(vocab))
        df = Counter(w for d in docs for w in set(d))
        r_, c_, v_ = [], [], []
        for n, d in enumerate(docs):
            tf = Counter(d)
            for w, k in tf.items():
                r_.append(n); c_.append(vocab[w]); v_.append(k * math.log(len(docs) / df[w]))
        T = sp.csr_matrix((v_, (r_, c_)), shape=(len(docs), len(vocab))).toarray()
        T /= np.linalg.norm(T, axis=1, keepdims=True) + 1e-12
        Uc = Xd @ T
        Uc /= np.linalg.norm(Uc, axis=1, keepdims=True) + 1e-12
        return Uc @ T.T
    S, secs = timed(tfidf)
    results["content_tfidf"] = {**evaluate(S, users, uidx, iidx, X, test), "train_s": secs}
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["users"] = len(users)
    results["items"] = len(item_ids)
    results["train_interactions"] = int(X.nnz)

    # The server's input: items (text tower: title, year, genres), training events, held-out items.
    with open(os.path.join(args.out, "items.jsonl"), "w") as f:
        for i in item_ids:
            it = items[i]
            f.write(json.dumps({"id": i, "title": it["title"], "description": f"{it['year']} {' '.join(it['genres'])}",
                                "category": it["genres"][0] if it["genres"] else ""}) + "\n")
    with open(os.path.join(args.out, "events.jsonl"), "w") as f:
        for u in users:
            for t, i in train[u]:
                f.write(json.dumps({"user_id": u, "item_id": i, "kind": "purchase", "timestamp_ms": t * 1000}) + "\n")
    with open(os.path.join(args.out, "test.json"), "w") as f:
        json.dump(test, f)
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps({k: ({"hr10": round(v["hr10"], 4), "ndcg10": round(v["ndcg10"], 4), "train_s": round(v["train_s"], 2)} if isinstance(v, dict) else v) for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
