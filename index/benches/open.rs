//! Opening cost of a flat graph file at scale, without building a real graph:
//!
//! ```text
//! cargo bench -p mmsearch-index --bench open -- [N=1000000] [DIM=384] [M=16] [DIR]
//! ```
//! Writes a file of N nodes (random unit vectors; every node on layer 0 with 2·M random links,
//! the usual 1/M level distribution above) — opening reads the header, ids and links and checks
//! them, never the graph's quality, so random links cost the same as real ones — then opens it
//! in fresh child processes: `open_s` (mmap + header, structure and link checksums), the first
//! search (`first_search_s`, page faults included) and VmRSS after opening. The page cache is
//! warm (the file was just written); a cold-cache number needs `echo 3 > /proc/sys/vm/drop_caches`
//! first, which this bench does not do on a shared machine.

use mmsearch_index::graph_file::{self, Builder, GraphSource};
use mmsearch_index::{FlatGraph, GraphFile, Metric};
use std::time::Instant;

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--child") {
        let (path, dim) = (&args[1], args[2].parse::<usize>().expect("dim"));
        let t0 = Instant::now();
        let g = FlatGraph::new(
            GraphFile::open(std::path::Path::new(path), dim, Metric::Cosine).expect("open"),
        );
        let open_s = t0.elapsed().as_secs_f64();
        let rss = rss_mib();
        let q: Vec<f32> = g.file.vector(12_345 % g.len() as u32).to_vec();
        let t1 = Instant::now();
        let hits = g.search(&q, 10, 64, Some(&|_| true));
        let first = t1.elapsed().as_secs_f64();
        println!("{{\"kind\":\"open\",\"n\":{},\"dim\":{dim},\"open_s\":{open_s:.4},\"rss_after_open_mib\":{rss:.1},\"first_search_s\":{first:.4},\"hits\":{},\"file_bytes\":{}}}", g.len(), hits.len(), g.file.file_bytes());
        return;
    }
    let n: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dim: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(384);
    let m: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
    let dir = args
        .get(3)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("open-bench-{n}-{dim}.graph"));
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mult = 1.0 / (m as f64).ln();
    let levels: Vec<u8> = (0..n)
        .map(|_| {
            ((-((next() >> 11) as f64 / (1u64 << 53) as f64 + 1e-12).ln() * mult) as u8).min(15)
        })
        .collect();
    let top = *levels.iter().max().unwrap_or(&0);
    let entry = levels.iter().position(|&l| l == top).unwrap_or(0) as u32;
    let by_level: Vec<Vec<u32>> = (0..=top as usize)
        .map(|l| {
            (0..n as u32)
                .filter(|&i| levels[i as usize] as usize >= l)
                .collect()
        })
        .collect();
    let rows: Vec<f32> = (0..n * dim)
        .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        .collect();
    let ids: Vec<u64> = (0..n as u64).collect();
    let vector = |i: usize| &rows[i * dim..(i + 1) * dim];
    let neighbours = |node: u32, level: usize, out: &mut Vec<u32>| {
        let pool = &by_level[level];
        let cap = if level == 0 { 2 * m } else { m }.min(pool.len().saturating_sub(1));
        let mut h = (node as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ level as u64;
        while out.len() < cap {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            let nb = pool[(h % pool.len() as u64) as usize];
            if nb != node && !out.contains(&nb) {
                out.push(nb);
            }
        }
    };
    let t0 = Instant::now();
    let bytes = graph_file::write(
        &path,
        &GraphSource {
            metric: Metric::Cosine,
            dim,
            m,
            m0: 2 * m,
            ef_construction: 0,
            builder: Builder::Native,
            ids: &ids,
            vector: &vector,
            levels: &levels,
            entry,
            neighbours: &neighbours,
        },
    )
    .expect("write");
    eprintln!(
        "[open] wrote {bytes} bytes ({:.1} per node) in {:.1}s",
        bytes as f64 / n as f64,
        t0.elapsed().as_secs_f64()
    );
    drop(rows);
    for _ in 0..3 {
        let st = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args(["--child", path.to_str().expect("path"), &dim.to_string()])
            .status()
            .expect("child");
        assert!(st.success());
    }
    let _ = std::fs::remove_file(&path);
}
