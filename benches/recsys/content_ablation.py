#!/usr/bin/env python3
"""Protocol A (#11) content-path ablation, offline: why the content user vector was weak and
what each change to it is worth. Embeds every movie as the server does (MiniLM, "title. year
genres", lower-cased, the model's own sentence_embedding, unit length) and scores the split that
reference.py wrote, the user's training items excluded, HR@10 / NDCG@10:
  plain mean of the history vectors (the server before #11's second pass),
  minus the catalogue mean, then with the recency-rank half-life (the server now),
  and TF-IDF (reference.py's baseline) without and with the same recency weights.
Recency: the k-th most recent item (ties by the (timestamp, item_id) order of the events)
weighs 0.5^(k / h).

usage: content_ablation.py --run ~/.cache/mmsearch/recsys/runA2 [--models ~/.cache/mmsearch/models]
needs: the recsys venv plus `pip install onnxruntime tokenizers`
"""
import argparse, json, math, os, re
from collections import Counter, defaultdict

import numpy as np


def embed(items, model_dir):
    import onnxruntime as ort
    from tokenizers import Tokenizer
    m = os.path.join(model_dir, "text-minilm-l6-v2")
    tok = Tokenizer.from_file(os.path.join(m, "tokenizer.json"))
    tok.enable_padding(pad_id=0)
    tok.enable_truncation(256)
    s = ort.InferenceSession(os.path.join(m, "model.onnx"))
    out = []
    for b in range(0, len(items), 64):
        enc = tok.encode_batch([f"{i['title']}. {i['description']}".lower() for i in items[b:b + 64]])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        am = np.array([e.attention_mask for e in enc], dtype=np.int64)
        out.append(s.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": am,
                                                  "token_type_ids": np.zeros_like(ids)})[0])
    v = np.concatenate(out)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--models", default=os.path.expanduser("~/.cache/mmsearch/models"))
    a = ap.parse_args()
    items = [json.loads(l) for l in open(os.path.join(a.run, "items.jsonl"))]
    idx = {it["id"]: n for n, it in enumerate(items)}
    test = json.load(open(os.path.join(a.run, "test.json")))
    hist = defaultdict(list)
    for l in open(os.path.join(a.run, "events.jsonl")):
        e = json.loads(l)
        hist[e["user_id"]].append(idx[e["item_id"]])  # written in (timestamp, item_id) order
    users = sorted(test, key=int)
    V = embed(items, a.models)
    docs = [re.findall(r"[a-z0-9']+", f"{i['title']} {i['description']}".lower()) for i in items]
    df = Counter(w for d in docs for w in set(d))
    voc = {w: n for n, w in enumerate(df)}
    T = np.zeros((len(docs), len(voc)))
    for n, d in enumerate(docs):
        for w, k in Counter(d).items():
            T[n, voc[w]] = k * math.log(len(docs) / df[w])
    T /= np.linalg.norm(T, axis=1, keepdims=True) + 1e-12

    def score(M, centre, h):
        def f(u):
            it = hist[u]
            w = 0.5 ** (np.arange(len(it))[::-1] / h) if h else np.ones(len(it))
            x = (w[:, None] * M[it]).sum(0) - (w.sum() * centre if centre is not None else 0)
            return M @ (x / (np.linalg.norm(x) + 1e-12))
        return f

    def ev(f):
        hr = nd = 0.0
        for u in users:
            s = f(u)
            s[hist[u]] = -np.inf
            r = int((s > s[idx[test[u]]]).sum())
            if r < 10:
                hr += 1
                nd += 1 / math.log2(r + 2)
        return {"hr10": round(hr / len(users), 4), "ndcg10": round(nd / len(users), 4)}

    m = V.mean(0)
    out = {
        "dense_plain_mean": ev(score(V, None, 0)),
        "dense_centred": ev(score(V, m, 0)),
        **{f"dense_centred_half_life_{h}": ev(score(V, m, h)) for h in (3, 5, 10, 20)},
        "tfidf": ev(score(T, None, 0)),
        **{f"tfidf_half_life_{h}": ev(score(T, None, h)) for h in (5, 10)},
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
