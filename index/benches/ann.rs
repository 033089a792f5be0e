//! ANN benchmark of `mmsearch-index` on real sets prepared by `prepare_ann.py`.
//!
//! ```text
//! cargo bench -p mmsearch-index --bench ann -- --set fashion-mnist-784 [--data DIR]
//!     [--ef 10,16,24,32,48,64,96,128,256] [--threads 1,2] [--m 16] [--efc 200] [--nq N] [--work DIR]
//!     [--builders native,hnsw_rs] [--old-path]
//! ```
//! Phases, one JSON object per line on stdout (schema shared with `ann_reference.py`):
//! 0. Flat graph files ([`mmsearch_index::graph_file`]), one per builder in `--builders`:
//!    `build` (variant `native`: `builder::build` on max(--threads) threads; variant `export`:
//!    hnsw_rs's build plus the export), `size` (the file), then a child process per file opens
//!    it with `GraphFile::open` (mmap + header, structure and link checksums) and reports
//!    `load` (open time, RSS) and the sweep (variant `flat-native` / `flat-export`) through
//!    `FlatGraph::search` with an all-pass filter closure, as a server would call it.
//!
//! With `--old-path`, also the hnsw_rs serving path of generations before the flat format:
//! 1. `build`: `HnswGraph::build` over the base set (hnsw_rs parallel insert, rayon = all cores),
//!    wall time, VmHWM/VmRSS of this process right after the build.
//! 2. `search`, variant `built`: the ef sweep on the in-memory graph, at each thread count
//!    (T OS threads, each searching a contiguous 1/T of the queries), recall@10 vs exact ground
//!    truth and QPS = queries / wall time of the whole batch. Every search passes an all-pass
//!    filter closure, as the server always does.
//! 3. `size`: a generation folder written with the same files and manifest as
//!    `GenerationWriter` (VectorFile + hnsw dump + MANIFEST.json with crc32), without building
//!    the graph a second time.
//! 4. A child process (this binary with `--mmap-child`) opens that generation with
//!    `Generation::open` (checksums + hnsw_rs reload with the data file mmapped), reports
//!    `load` (time, VmHWM of a process that only serves) and the same sweep as variant `mmap`.
//!
//! Every line carries `load1` (the 1-minute load average when it was written): other work
//! shares the machine.

use mmsearch_index::builder::{self, BuildParams};
use mmsearch_index::generation::{FileEntry, Manifest, SpaceManifest};
use mmsearch_index::{
    export, FlatGraph, Generation, GraphFile, HnswGraph, HnswParams, Metric, SpaceSpec, VectorFile,
};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

const K: usize = 10;
const SPACE: &str = "bench";

#[derive(Clone)]
struct Args {
    set: String,
    data: PathBuf,
    efs: Vec<usize>,
    threads: Vec<usize>,
    m: usize,
    efc: usize,
    nq: usize,
    work: Option<PathBuf>,
    mmap_child: Option<PathBuf>,
    diag_efs: Vec<usize>,
    builders: Vec<String>,
    old_path: bool,
    flat_child: Option<(PathBuf, String)>,
}

fn usage() -> ! {
    eprintln!(
        "usage: ann --set NAME [--data DIR] [--ef LIST] [--threads LIST] [--m 16] [--efc 200] [--nq N] [--work DIR] [--diag-ef LIST] [--builders native,hnsw_rs] [--old-path]"
    );
    std::process::exit(2)
}

fn list(s: &str) -> Vec<usize> {
    s.split(',')
        .map(|x| x.trim().parse().unwrap_or_else(|_| usage()))
        .collect()
}

fn parse_args() -> Args {
    let default_data = std::env::var_os("MMSEARCH_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/mmsearch/bench")
        });
    let mut a = Args {
        set: String::new(),
        data: default_data,
        efs: vec![10, 16, 24, 32, 48, 64, 96, 128, 256],
        threads: vec![1, 2],
        m: 16,
        efc: 200,
        nq: usize::MAX,
        work: None,
        mmap_child: None,
        diag_efs: Vec::new(),
        builders: vec!["native".into(), "hnsw_rs".into()],
        old_path: false,
        flat_child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--bench" => {} // appended by `cargo bench`
            "--set" => a.set = val(),
            "--data" => a.data = PathBuf::from(val()),
            "--ef" => a.efs = list(&val()),
            "--threads" => a.threads = list(&val()),
            "--m" => a.m = val().parse().unwrap_or_else(|_| usage()),
            "--efc" => a.efc = val().parse().unwrap_or_else(|_| usage()),
            "--nq" => a.nq = val().parse().unwrap_or_else(|_| usage()),
            "--work" => a.work = Some(PathBuf::from(val())),
            "--mmap-child" => a.mmap_child = Some(PathBuf::from(val())),
            "--diag-ef" => a.diag_efs = list(&val()),
            "--builders" => a.builders = val().split(',').map(|b| b.trim().to_string()).collect(),
            "--old-path" => a.old_path = true,
            "--flat-child" => {
                let file = PathBuf::from(val());
                a.flat_child = Some((file, val()));
            }
            _ => usage(),
        }
    }
    if a.set.is_empty() {
        usage()
    }
    a
}

struct Set {
    dim: usize,
    metric: Metric,
    n_base: usize,
    queries: Vec<Vec<f32>>,
    gt: Vec<[u32; K]>,
}

fn read_f32(path: &Path) -> Vec<f32> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .unwrap_or_else(|e| panic!("{}: {e} (run index/benches/prepare_ann.py)", path.display()));
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn load_meta(dir: &Path) -> Value {
    let p = dir.join("meta.json");
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (run index/benches/prepare_ann.py)", p.display()));
    serde_json::from_str(&text).expect("meta.json")
}

fn load_set(args: &Args) -> Set {
    let dir = args.data.join(&args.set);
    let meta = load_meta(&dir);
    let dim = meta["dim"].as_u64().expect("dim") as usize;
    let metric = Metric::parse(meta["metric"].as_str().expect("metric")).expect("metric name");
    let n_base = meta["n_base"].as_u64().expect("n_base") as usize;
    let nq = (meta["n_query"].as_u64().expect("n_query") as usize).min(args.nq);
    let raw_q = read_f32(&dir.join("query.f32"));
    let queries = raw_q
        .chunks_exact(dim)
        .take(nq)
        .map(|q| metric.prepare(dim, q).expect("query"))
        .collect();
    let raw_gt = std::fs::read(dir.join("gt.i32")).expect("gt.i32");
    let gt = raw_gt
        .chunks_exact(4 * K)
        .take(nq)
        .map(|row| {
            let mut r = [0u32; K];
            for (j, c) in row.chunks_exact(4).enumerate() {
                r[j] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            r
        })
        .collect();
    Set {
        dim,
        metric,
        n_base,
        queries,
        gt,
    }
}

fn proc_status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds this process has used (user + system, all threads), from /proc/self/stat. On a
/// shared machine wall time measures the other tenants as much as the code; CPU time much less.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let ticks = 100.0; // USER_HZ on Linux
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / ticks
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(-1.0)
}

fn emit(args: &Args, variant: &str, mut v: Value) {
    let o = v.as_object_mut().expect("object");
    o.insert("engine".into(), json!("mmsearch-index"));
    o.insert("set".into(), json!(args.set));
    o.insert("variant".into(), json!(variant));
    o.insert("m".into(), json!(args.m));
    o.insert("ef_construction".into(), json!(args.efc));
    o.insert("load1".into(), json!(load1()));
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}").expect("stdout");
    out.flush().expect("stdout");
}

fn recall(gt: &[[u32; K]], results: &[Vec<u64>]) -> f64 {
    let mut hit = 0usize;
    for (g, r) in gt.iter().zip(results) {
        hit += r.iter().filter(|id| g.contains(&(**id as u32))).count();
    }
    hit as f64 / (gt.len() * K) as f64
}

/// Runs every query at one ef with `threads` OS threads; returns (wall seconds, results).
fn run_queries(
    search: &(dyn Fn(&[f32], usize) -> Vec<u64> + Sync),
    qs: &[Vec<f32>],
    ef: usize,
    threads: usize,
) -> (f64, Vec<Vec<u64>>) {
    let per = qs.len().div_ceil(threads.max(1));
    let t0 = Instant::now();
    let parts: Vec<Vec<Vec<u64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = qs
            .chunks(per.max(1))
            .map(|chunk| s.spawn(move || chunk.iter().map(|q| search(q, ef)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("search thread"))
            .collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    (secs, parts.into_iter().flatten().collect())
}

fn sweep(
    args: &Args,
    set: &Set,
    variant: &str,
    search: &(dyn Fn(&[f32], usize) -> Vec<u64> + Sync),
) {
    // Warm caches and the allocator once per variant.
    let warm = set.queries.len().min(1000);
    let _ = run_queries(
        search,
        &set.queries[..warm],
        *args.efs.iter().max().unwrap_or(&64),
        1,
    );
    for &ef in &args.efs {
        for &t in &args.threads {
            let cpu0 = cpu_seconds();
            let (secs, res) = run_queries(search, &set.queries, ef, t);
            let cpu_s = cpu_seconds() - cpu0;
            let r = recall(&set.gt, &res);
            emit(
                args,
                variant,
                json!({"kind": "search", "ef": ef, "threads": t, "nq": set.queries.len(),
                       "recall": r, "qps": set.queries.len() as f64 / secs, "secs": secs, "cpu_s": cpu_s,
                       "cpu_qps": set.queries.len() as f64 / cpu_s.max(0.01)}),
            );
        }
    }
}

fn file_entry(path: &Path) -> FileEntry {
    let bytes = std::fs::read(path).expect("read dumped file");
    FileEntry {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        bytes: bytes.len() as u64,
        crc32: crc32fast::hash(&bytes),
    }
}

fn graph_search(g: &HnswGraph) -> impl Fn(&[f32], usize) -> Vec<u64> + Sync + '_ {
    move |q: &[f32], ef: usize| {
        g.search(q, K, ef, &|_| true)
            .into_iter()
            .map(|s| s.id)
            .collect()
    }
}

fn mmap_child(args: &Args, gen_dir: &Path) {
    let set = load_set(args);
    let spec = SpaceSpec {
        name: SPACE.into(),
        dim: set.dim,
        metric: set.metric,
    };
    let t0 = Instant::now();
    let generation =
        Generation::open(gen_dir, std::slice::from_ref(&spec)).expect("open generation");
    let load_s = t0.elapsed().as_secs_f64();
    let seg = generation.segment(SPACE).expect("segment");
    let graph = seg.graph.as_ref().expect("graph");
    assert!(graph.is_mapped());
    emit(
        args,
        "mmap",
        json!({"kind": "load", "load_s": load_s, "peak_rss_mib": proc_status_kib("VmHWM:") as f64 / 1024.0,
               "rss_mib": proc_status_kib("VmRSS:") as f64 / 1024.0}),
    );
    // The server searches through BaseSegment::search; same call as graph.search when a graph exists.
    let search = |q: &[f32], ef: usize| {
        seg.search(q, K, ef, &|_| true)
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    sweep(args, &set, "mmap", &search);
    if !args.diag_efs.is_empty() {
        drop(generation);
        diagnose(args, &set, gen_dir);
    }
}

/// Diagnostic sweeps (1 thread, `--diag-ef`) straight on hnsw_rs, reloading the same dump with
/// anndists' own distance types: `hnsw_rs+filter` is exactly what `HnswGraph::search` did before
/// the fast path (all-pass filter closure inside hnsw_rs, anndists kernels), `hnsw_rs` the same
/// graph searched without a filter. Compare with variant `mmap` (current `HnswGraph::search`).
fn diagnose(args: &Args, set: &Set, gen_dir: &Path) {
    use hnsw_rs::prelude::{DistDot, DistL2, Distance, Hnsw, HnswIo, ReloadOptions};
    fn run<D: Distance<f32> + Send + Sync>(args: &Args, set: &Set, h: &Hnsw<'_, f32, D>) {
        let a = Args {
            threads: vec![1],
            efs: args.diag_efs.clone(),
            diag_efs: Vec::new(),
            ..args.clone()
        };
        let filtered = |q: &[f32], ef: usize| {
            let f = |_id: &usize| true;
            h.search_filter(q, K, ef.max(K), Some(&f))
                .into_iter()
                .map(|n| n.d_id as u64)
                .collect()
        };
        sweep(&a, set, "hnsw_rs+filter", &filtered);
        let plain = |q: &[f32], ef: usize| {
            h.search_filter(q, K, ef.max(K), None)
                .into_iter()
                .map(|n| n.d_id as u64)
                .collect()
        };
        sweep(&a, set, "hnsw_rs", &plain);
    }
    let mut io = HnswIo::new_with_options(gen_dir, SPACE, ReloadOptions::default().set_mmap(true));
    match set.metric {
        Metric::L2 => run(args, set, &io.load_hnsw::<f32, DistL2>().expect("reload")),
        Metric::Cosine => run(args, set, &io.load_hnsw::<f32, DistDot>().expect("reload")),
    }
}

/// Serves one graph file in a fresh process: open time, RSS of a process that only serves,
/// then the sweep.
fn flat_child(args: &Args, file: &Path, variant: &str) {
    let set = load_set(args);
    let t0 = Instant::now();
    let graph =
        FlatGraph::new(GraphFile::open(file, set.dim, set.metric).expect("open graph file"));
    let load_s = t0.elapsed().as_secs_f64();
    emit(
        args,
        variant,
        json!({"kind": "load", "load_s": load_s, "peak_rss_mib": proc_status_kib("VmHWM:") as f64 / 1024.0,
               "rss_mib": proc_status_kib("VmRSS:") as f64 / 1024.0, "kernel": format!("{:?}", graph.kernel.isa),
               "layers": graph.file.layer_counts()}),
    );
    let all = |_: u64| true;
    let search = |q: &[f32], ef: usize| -> Vec<u64> {
        graph
            .search(q, K, ef, Some(&all))
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    sweep(args, &set, variant, &search);
}

fn spawn_child(args: &Args, extra: &[&std::ffi::OsStr]) {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("exe"));
    cmd.args(["--set", &args.set])
        .arg("--data")
        .arg(&args.data)
        .args(extra);
    cmd.args([
        "--ef",
        &args
            .efs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(","),
    ]);
    cmd.args([
        "--threads",
        &args
            .threads
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(","),
    ]);
    cmd.args(["--m", &args.m.to_string(), "--efc", &args.efc.to_string()]);
    if args.nq != usize::MAX {
        cmd.args(["--nq", &args.nq.to_string()]);
    }
    let status = cmd.status().expect("spawn child");
    assert!(status.success(), "child failed: {status}");
}

fn main() {
    let args = parse_args();
    if let Some(gen_dir) = args.mmap_child.clone() {
        mmap_child(&args, &gen_dir);
        return;
    }
    if let Some((file, variant)) = args.flat_child.clone() {
        flat_child(&args, &file, &variant);
        return;
    }
    let set = load_set(&args);
    let dir = args.data.join(&args.set);
    let base_raw = read_f32(&dir.join("base.f32"));
    assert_eq!(base_raw.len(), set.n_base * set.dim, "base.f32 size");
    // Prepared rows (unit length for cosine), ids = row numbers so ground truth applies directly.
    let base: Vec<f32> = match set.metric {
        Metric::L2 => base_raw,
        Metric::Cosine => base_raw
            .chunks_exact(set.dim)
            .flat_map(|r| set.metric.prepare(set.dim, r).expect("row"))
            .collect(),
    };
    let rows: Vec<(u64, &[f32])> = base
        .chunks_exact(set.dim)
        .enumerate()
        .map(|(i, r)| (i as u64, r))
        .collect();
    let params = HnswParams {
        m: args.m,
        ef_construction: args.efc,
        ..HnswParams::default()
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| args.data.join("_work").join(&args.set));
    if work.exists() {
        std::fs::remove_dir_all(&work).expect("clear work dir");
    }
    std::fs::create_dir_all(&work).expect("mkdir work");
    let ids: Vec<u64> = (0..set.n_base as u64).collect();
    let mut files: Vec<(PathBuf, &str)> = Vec::new();
    let mut hnsw_rs_graph = None;
    for b in args.builders.clone() {
        let t0 = Instant::now();
        let (variant, path) = match b.as_str() {
            "native" => {
                let cpu0 = cpu_seconds();
                let bt = args.threads.iter().copied().max().unwrap_or(1);
                eprintln!(
                    "[ann] {}: native build of {} x {} on {bt} threads",
                    args.set, set.n_base, set.dim
                );
                let p = BuildParams {
                    m: args.m,
                    ef_construction: args.efc,
                    threads: bt,
                    seed: 100,
                };
                let refs: Vec<&[f32]> = base.chunks_exact(set.dim).collect();
                let g =
                    builder::build(set.metric, set.dim, &refs, &p, &|_| {}).expect("native build");
                let build_s = t0.elapsed().as_secs_f64();
                let path = work.join("native.graph");
                let t1 = Instant::now();
                let bytes = g.write(&path, &ids, &refs).expect("write graph");
                emit(
                    &args,
                    "native",
                    json!({"kind": "build", "build_s": build_s, "build_cpu_s": cpu_seconds() - cpu0, "n": set.n_base, "dim": set.dim,
                    "metric": set.metric.as_str(), "build_threads": bt,
                    "peak_rss_mib": proc_status_kib("VmHWM:") as f64 / 1024.0, "rss_mib": proc_status_kib("VmRSS:") as f64 / 1024.0,
                    "raw_data_mib": (set.n_base * set.dim * 4) as f64 / 1048576.0}),
                );
                emit(
                    &args,
                    "native",
                    json!({"kind": "size", "dump_s": t1.elapsed().as_secs_f64(), "index_bytes": bytes,
                    "bytes_per_item": bytes as f64 / set.n_base as f64}),
                );
                ("flat-native", path)
            }
            "hnsw_rs" => {
                let cpu0 = cpu_seconds();
                eprintln!(
                    "[ann] {}: hnsw_rs build of {} x {} on {threads} threads (rayon)",
                    args.set, set.n_base, set.dim
                );
                let g = HnswGraph::build(set.metric, &params, &rows, &mut |_| {})
                    .expect("hnsw_rs build");
                let build_s = t0.elapsed().as_secs_f64();
                let path = work.join("export.graph");
                let t1 = Instant::now();
                let bytes = export::write(&path, &g, &params, set.dim, &rows).expect("export");
                emit(
                    &args,
                    "export",
                    json!({"kind": "build", "build_s": build_s, "build_cpu_s": cpu_seconds() - cpu0, "n": set.n_base, "dim": set.dim,
                    "metric": set.metric.as_str(), "build_threads": threads,
                    "peak_rss_mib": proc_status_kib("VmHWM:") as f64 / 1024.0, "rss_mib": proc_status_kib("VmRSS:") as f64 / 1024.0,
                    "raw_data_mib": (set.n_base * set.dim * 4) as f64 / 1048576.0, "layers": g.layer_counts()}),
                );
                emit(
                    &args,
                    "export",
                    json!({"kind": "size", "dump_s": t1.elapsed().as_secs_f64(), "index_bytes": bytes,
                    "bytes_per_item": bytes as f64 / set.n_base as f64}),
                );
                hnsw_rs_graph = Some(g);
                ("flat-export", path)
            }
            other => panic!("unknown builder {other} (native, hnsw_rs)"),
        };
        files.push((path, variant));
    }
    for (path, variant) in &files {
        spawn_child(
            &args,
            &["--flat-child".as_ref(), path.as_os_str(), variant.as_ref()],
        );
    }
    if !args.old_path {
        return;
    }
    drop(hnsw_rs_graph);
    eprintln!(
        "[ann] {}: building {} x {} ({:?}) on {threads} threads",
        args.set, set.n_base, set.dim, set.metric
    );

    let t0 = Instant::now();
    let mut last_report = Instant::now();
    let graph = HnswGraph::build(set.metric, &params, &rows, &mut |done| {
        if last_report.elapsed().as_secs() >= 30 {
            eprintln!(
                "[ann]   {done}/{} after {:.0}s",
                rows.len(),
                t0.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    })
    .expect("build");
    let build_s = t0.elapsed().as_secs_f64();
    emit(
        &args,
        "built",
        json!({"kind": "build", "build_s": build_s, "n": set.n_base, "dim": set.dim, "metric": set.metric.as_str(),
               "build_threads": threads, "peak_rss_mib": proc_status_kib("VmHWM:") as f64 / 1024.0,
               "rss_mib": proc_status_kib("VmRSS:") as f64 / 1024.0,
               "raw_data_mib": (set.n_base * set.dim * 4) as f64 / 1048576.0,
               "layers": graph.layer_counts()}),
    );
    sweep(&args, &set, "built", &graph_search(&graph));

    // A generation folder laid out as GenerationWriter::add_space + commit would leave it.
    let gen_dir = work.join("gen-00000000000000000001");
    std::fs::create_dir_all(&gen_dir).expect("mkdir");
    let t0 = Instant::now();
    let vec_path = gen_dir.join(format!("{SPACE}.vec"));
    VectorFile::write(&vec_path, set.dim, set.metric, &rows).expect("vector file");
    graph.dump(&gen_dir, SPACE).expect("dump");
    let dump_s = t0.elapsed().as_secs_f64();
    let files: Vec<FileEntry> = ["vec", "hnsw.graph", "hnsw.data"]
        .iter()
        .map(|s| file_entry(&gen_dir.join(format!("{SPACE}.{s}"))))
        .collect();
    let spec = SpaceSpec {
        name: SPACE.into(),
        dim: set.dim,
        metric: set.metric,
    };
    let manifest = Manifest {
        generation: 1,
        snapshot_seq: set.n_base as u64,
        created_unix: 0,
        spaces: vec![SpaceManifest {
            spec,
            params,
            count: set.n_base,
            files: files.clone(),
        }],
    };
    std::fs::write(
        gen_dir.join("MANIFEST.json"),
        serde_json::to_vec_pretty(&manifest).expect("manifest"),
    )
    .expect("write manifest");
    let size = |suffix: &str| {
        files
            .iter()
            .find(|f| f.name.ends_with(suffix))
            .map_or(0, |f| f.bytes)
    };
    emit(
        &args,
        "built",
        json!({"kind": "size", "dump_s": dump_s,
               "index_bytes": size(".hnsw.graph") + size(".hnsw.data"),
               "graph_bytes": size(".hnsw.graph"), "data_bytes": size(".hnsw.data"), "vec_bytes": size(".vec"),
               "generation_bytes": files.iter().map(|f| f.bytes).sum::<u64>()}),
    );
    drop(graph);
    drop(rows);
    drop(base);

    // Serve from the generation in a fresh process so its RSS is that of a serving process.
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("exe"));
    cmd.args(["--set", &args.set, "--mmap-child"])
        .arg(&gen_dir)
        .arg("--data")
        .arg(&args.data);
    cmd.args([
        "--ef",
        &args
            .efs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(","),
    ]);
    cmd.args([
        "--threads",
        &args
            .threads
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(","),
    ]);
    cmd.args(["--m", &args.m.to_string(), "--efc", &args.efc.to_string()]);
    if args.nq != usize::MAX {
        cmd.args(["--nq", &args.nq.to_string()]);
    }
    if !args.diag_efs.is_empty() {
        cmd.args([
            "--diag-ef",
            &args
                .diag_efs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    let status = cmd.status().expect("spawn mmap child");
    assert!(status.success(), "mmap child failed: {status}");
}
