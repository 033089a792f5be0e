#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      (default 300 s, all four targets)
#
# Needs `cargo install cargo-fuzz` and a nightly toolchain (`cargo +nightly fuzz`; set
# FUZZ_TOOLCHAIN=stable to use stable with RUSTC_BOOTSTRAP=1 instead). The fuzz build
# instruments with different RUSTFLAGS, so it gets its own target dir; to avoid recompiling
# RocksDB's C++ (20-45 min) it links an already-built static librocksdb: set ROCKSDB_LIB_DIR to
# a directory holding librocksdb.a (e.g. a main build's target/*/build/librocksdb-sys-*/out),
# or leave it unset to let librocksdb-sys build it once.
#
# Corpus: fuzz/corpus/<target> (working, not committed) starts from fuzz/seeds/<target> and
# fuzz/regressions/<target>. Crashes land in fuzz/artifacts/<target>; copy them into
# fuzz/regressions/<target> once fixed (tests/fuzz_regressions.rs replays that directory).
# Each run's libFuzzer log is kept in fuzz/logs/<target>.log; the last "Done N runs" line and
# the corpus size are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(image_decode audio_decode catalog_line request_validate)

toolchain=${FUZZ_TOOLCHAIN:-nightly}
if [ "$toolchain" = stable ]; then
    export RUSTC_BOOTSTRAP=1
    cargo_fuzz=(cargo fuzz)
else
    cargo_fuzz=(cargo "+$toolchain" fuzz)
fi
if [ -n "${ROCKSDB_LIB_DIR:-}" ]; then
    export ROCKSDB_STATIC=1
fi
target_dir=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-fuzz/target}}
# ASan adds little to a Rust code base whose failures are panics, aborts on allocation and
# hangs, and halves throughput; FUZZ_SANITIZER=address turns it on.
build_args=(--release --debug-assertions --sanitizer "${FUZZ_SANITIZER:-none}" --target-dir "$target_dir")

"${cargo_fuzz[@]}" build "${build_args[@]}"

mkdir -p fuzz/logs
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "fuzz/regressions/$t"
    dicts=()
    [ -f "fuzz/dicts/$t.dict" ] && dicts=("-dict=fuzz/dicts/$t.dict")
    # -rss_limit_mb: an input that needs more than this is a bug (the limits must stop it);
    # -timeout: a single input running this long is a hang.
    "$target_dir/x86_64-unknown-linux-gnu/release/$t" \
        "fuzz/corpus/$t" "fuzz/seeds/$t" "fuzz/regressions/$t" \
        -artifact_prefix="fuzz/artifacts/$t/" \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=262144 \
        -print_final_stats=1 "${dicts[@]}" 2>&1 | tee "fuzz/logs/$t.log" | grep -E "^#|ERROR|panicked|Done" | tail -n 3 || true
    runs=$(grep -oE "Done [0-9]+ runs in [0-9]+ second" "fuzz/logs/$t.log" | tail -1 || true)
    echo "== $t: ${runs:-no final stats (crashed?)}; corpus $(ls "fuzz/corpus/$t" | wc -l) files; artifacts $(ls "fuzz/artifacts/$t" | wc -l)"
done
