//! Harness for the tools' process-level tests: the server harness of the root package's tests
//! (`tests/common/mod.rs`), started from this workspace's `mmsearch` binary. Cargo gives a test
//! only its own package's binaries, so [`use_workspace_server`] finds the server next to the test
//! executable (`<target>/<profile>/mmsearch`) and builds it with `cargo build -p mmsearch` when it
//! is missing or older than the server's sources.
#![allow(dead_code)]

#[path = "../../../tests/common/mod.rs"]
mod harness;

pub use harness::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Points the harness at the workspace's `mmsearch` binary, building it first if needed. Call it
/// before starting a server.
pub fn use_workspace_server() {
    set_server_binary(workspace_server);
}

fn workspace_server() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in <target>/<profile>/deps");
    let binary = profile_dir.join(format!("mmsearch{}", std::env::consts::EXE_SUFFIX));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tools/ is inside the workspace");
    let sources = [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src",
        "proto",
        "index/Cargo.toml",
        "index/src",
    ];
    let newest = sources
        .iter()
        .filter_map(|s| newest_modified(&root.join(s)))
        .max();
    if modified(&binary).is_some_and(|built| newest.is_none_or(|source| source <= built)) {
        return binary;
    }
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory name");
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    build
        .current_dir(root)
        .args(["build", "-p", "mmsearch", "--bin", "mmsearch"]);
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    build.env(
        "CARGO_TARGET_DIR",
        profile_dir.parent().expect("target directory"),
    );
    // Not the variables cargo sets for this test (package name, manifest dir, ...): some build
    // scripts (ring's) rerun when they change, which would rebuild half the dependency tree here
    // and again in the next plain `cargo build`.
    const PER_TEST: [&str; 6] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "OUT_DIR",
    ];
    for name in std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()) {
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || PER_TEST.contains(&name.as_str())
        {
            build.env_remove(name);
        }
    }
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("running {build:?}: {e}"));
    assert!(status.success(), "{build:?} failed: {status}");
    assert!(
        binary.is_file(),
        "{build:?} did not write {}",
        binary.display()
    );
    binary
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of a file, or of the files under a directory.
fn newest_modified(path: &Path) -> Option<SystemTime> {
    if !path.is_dir() {
        return modified(path);
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|e| newest_modified(&e.path()))
        .max()
}
