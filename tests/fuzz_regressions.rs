//! Replays every committed fuzz input through the same entry points the `cargo fuzz` targets
//! call (`fuzz/entries.rs`): the seed corpus (`fuzz/seeds/<target>/`) and every input a fuzz
//! run found to crash, hang or balloon memory before its fix (`fuzz/regressions/<target>/`).
//! An entry point panics on a bug and returns on a clean accept or a clean error, so this test
//! passing means none of those inputs reproduces. Runs on stable, no fuzz build needed.

#[path = "../fuzz/entries.rs"]
mod entries;

use std::path::Path;

fn replay(target: &str, entry: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(read) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = read
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let outcome = std::panic::catch_unwind(|| entry(&data));
            assert!(outcome.is_ok(), "{target}: {} panicked", f.display());
            n += 1;
        }
    }
    assert!(n > 0, "no inputs for {target} under {}", root.display());
}

#[test]
fn image_decode_inputs() {
    replay("image_decode", entries::image);
}

#[test]
fn audio_decode_inputs() {
    replay("audio_decode", entries::audio);
}

#[test]
fn catalog_line_inputs() {
    replay("catalog_line", entries::catalog_line);
}

#[test]
fn request_validate_inputs() {
    replay("request_validate", entries::request);
}
