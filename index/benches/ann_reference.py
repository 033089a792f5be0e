#!/usr/bin/env python3
"""Reference ANN numbers for index/benches/ann.rs: hnswlib, faiss-cpu IndexHNSWFlat and usearch.

    python index/benches/ann_reference.py --engine hnswlib|faiss|usearch --set fashion-mnist-784
        [--data DIR] [--ef 10,16,...] [--threads 1,2] [--m 16] [--efc 200] [--nq N]

Same sets (prepare_ann.py), same parameters and the same JSON-lines schema as ann.rs:
`build` (wall time, VmHWM/VmRSS of this process right after the build), `search` (recall@10
and QPS per ef and thread count: the whole query batch in one call, the library spreading it
over T threads), `size` (the index saved with the library's own writer).
Thread counts are set explicitly: hnswlib `set_num_threads` / `num_threads=`, faiss
`omp_set_num_threads`. Build uses the largest thread count given (2 on the bench machine).
Cosine sets: hnswlib space 'cosine' (normalises internally); faiss METRIC_INNER_PRODUCT on
L2-normalised vectors; usearch metric 'ip' on L2-normalised vectors / 'l2sq'. usearch is
measured in its memory-mapped mode: built, saved, then `Index.restore(path, view=True)` and
searched from the view (variant `view`), as the flat graph is served mmapped.
Run one engine per process so each peak RSS is that engine's alone.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 10


def kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def load1() -> float:
    return float(open("/proc/loadavg").read().split()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", required=True, choices=["hnswlib", "faiss", "usearch"])
    ap.add_argument("--set", required=True)
    ap.add_argument("--data", default=os.environ.get("MMSEARCH_BENCH_DATA",
                                                     str(Path.home() / ".cache/mmsearch/bench")))
    ap.add_argument("--ef", default="10,16,24,32,48,64,96,128,256")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument("--nq", type=int, default=0)
    args = ap.parse_args()
    efs = [int(x) for x in args.ef.split(",")]
    threads = [int(x) for x in args.threads.split(",")]

    d = Path(args.data) / args.set
    meta = json.loads((d / "meta.json").read_text())
    dim, metric = meta["dim"], meta["metric"]
    base = np.fromfile(d / "base.f32", dtype="<f4").reshape(-1, dim)
    query = np.fromfile(d / "query.f32", dtype="<f4").reshape(-1, dim)
    gt = np.fromfile(d / "gt.i32", dtype="<i4").reshape(-1, K)
    if args.nq:
        query, gt = query[:args.nq], gt[:args.nq]
    if metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        query = query / np.linalg.norm(query, axis=1, keepdims=True)
    base = np.ascontiguousarray(base, dtype=np.float32)
    query = np.ascontiguousarray(query, dtype=np.float32)

    variant = {"usearch": "view"}.get(args.engine, "built")

    def emit(**kw):
        rec = {"engine": args.engine, "set": args.set, "variant": variant, "m": args.m,
               "ef_construction": args.efc, **kw, "load1": load1()}
        print(json.dumps(rec), flush=True)

    build_threads = max(threads)
    if args.engine == "hnswlib":
        import hnswlib
        from importlib.metadata import version as pkg_version
        version = pkg_version("hnswlib")
        index = hnswlib.Index(space="cosine" if metric == "cosine" else "l2", dim=dim)
        c0 = time.process_time()
        t0 = time.perf_counter()
        index.init_index(max_elements=len(base), ef_construction=args.efc, M=args.m, random_seed=100)
        index.set_num_threads(build_threads)
        index.add_items(base, np.arange(len(base)), num_threads=build_threads)
        build_s = time.perf_counter() - t0
        build_cpu_s = time.process_time() - c0

        def search(q, ef, t):
            index.set_ef(ef)
            labels, _ = index.knn_query(q, k=K, num_threads=t)
            return labels

        def save(path):
            index.save_index(str(path))
    elif args.engine == "usearch":
        import usearch
        from usearch.index import Index
        version = usearch.__version__
        built = Index(ndim=dim, metric="ip" if metric == "cosine" else "l2sq", dtype="f32",
                      connectivity=args.m, expansion_add=args.efc, expansion_search=64)
        c0 = time.process_time()
        t0 = time.perf_counter()
        built.add(np.arange(len(base), dtype=np.uint64), base, threads=build_threads)
        build_s = time.perf_counter() - t0
        build_cpu_s = time.process_time() - c0
        saved = Path(tempfile.mkdtemp(dir=args.data)) / "usearch.bin"
        built.save(str(saved))
        del built
        t0 = time.perf_counter()
        index = Index.restore(str(saved), view=True)
        view_s = time.perf_counter() - t0

        def search(q, ef, t):
            index.expansion_search = ef
            return index.search(q, K, threads=t).keys

        def save(path):
            import shutil
            shutil.copy(saved, path)
    else:
        import faiss
        version = faiss.__version__
        faiss.omp_set_num_threads(build_threads)
        mt = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        index = faiss.IndexHNSWFlat(dim, args.m, mt)
        index.hnsw.efConstruction = args.efc
        c0 = time.process_time()
        t0 = time.perf_counter()
        index.add(base)
        build_s = time.perf_counter() - t0
        build_cpu_s = time.process_time() - c0

        def search(q, ef, t):
            faiss.omp_set_num_threads(t)
            index.hnsw.efSearch = ef
            _, labels = index.search(q, K)
            return labels

        def save(path):
            faiss.write_index(index, str(path))

    emit(kind="build", build_s=build_s, build_cpu_s=build_cpu_s, n=len(base), dim=dim, metric=metric, build_threads=build_threads,
         peak_rss_mib=kib("VmHWM:") / 1024, rss_mib=kib("VmRSS:") / 1024,
         raw_data_mib=base.nbytes / 2**20, version=version)

    if args.engine == "usearch":
        emit(kind="load", load_s=view_s, rss_mib=kib("VmRSS:") / 1024)
    search(query[:1000], max(efs), 1)  # warm-up, as ann.rs
    for ef in efs:
        for t in threads:
            c0 = time.process_time()
            t0 = time.perf_counter()
            labels = search(query, ef, t)
            secs = time.perf_counter() - t0
            cpu_s = time.process_time() - c0
            hits = sum(len(np.intersect1d(labels[i], gt[i])) for i in range(len(gt)))
            emit(kind="search", ef=ef, threads=t, nq=len(query), recall=hits / (len(gt) * K),
                 qps=len(query) / secs, secs=secs, cpu_s=cpu_s, cpu_qps=len(query) / max(cpu_s, 0.01))

    with tempfile.TemporaryDirectory(dir=args.data) as tmp:
        p = Path(tmp) / "index.bin"
        t0 = time.perf_counter()
        save(p)
        emit(kind="size", dump_s=time.perf_counter() - t0, index_bytes=p.stat().st_size)


if __name__ == "__main__":
    sys.exit(main())
