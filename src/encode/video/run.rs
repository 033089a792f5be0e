//! FFmpeg as a contained subprocess: input from an anonymous in-memory file, limits set in the
//! child before `exec`, a kill at the wall-clock deadline, and a cap on what it may write back.
//!
//! The input is a `memfd` (no path on any file system), handed to the child as its stdin and
//! opened there as `file:/dev/stdin`: re-opening `/proc/self/fd/0` gives FFmpeg a *seekable*
//! file, which MP4s with the index (`moov`) at the end need, and nothing is ever written to disk,
//! so no temporary file can be left behind, even when this process dies mid-call.
//!
//! The child runs in its own process group with `RLIMIT_AS` (memory), `RLIMIT_CPU`,
//! `RLIMIT_FSIZE = 0` (it may not write files) and no core dumps. A decoder that hangs is killed
//! (SIGKILL to the group) at the deadline; one that crashes or runs out of memory dies alone.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one child may use.
#[derive(Debug, Clone, Copy)]
pub struct ChildLimits {
    pub wall: Duration,
    pub memory_bytes: u64,
    pub cpu_seconds: u64,
    /// Bytes of stdout beyond which the child is killed.
    pub max_output: usize,
}

#[derive(Debug)]
pub enum RunError {
    /// The program could not be started (missing binary, no permission).
    Spawn(std::io::Error),
    /// Killed at the wall-clock deadline.
    Timeout(Duration),
    /// Wrote more than `max_output` bytes.
    OutputTooLarge(usize),
    /// Exited non-zero or died of a signal; the last lines of its stderr.
    Failed {
        status: String,
        stderr: String,
    },
    Io(std::io::Error),
}

/// The input bytes in an anonymous memory file, rewound.
pub fn memfd(bytes: &[u8]) -> std::io::Result<File> {
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the fd it returns (if ≥ 0)
    // is ours alone, so wrapping it in an OwnedFd is sound.
    let fd = unsafe { libc::memfd_create(c"mmsearch-video".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    f.write_all(bytes)?;
    Ok(f)
}

/// Runs `program args…` with `input` as stdin; returns its stdout.
pub fn run(
    program: &Path,
    args: &[String],
    input: &File,
    limits: ChildLimits,
) -> Result<Vec<u8>, RunError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::from(input.try_clone().map_err(RunError::Io)?))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let (mem, cpu) = (limits.memory_bytes, limits.cpu_seconds);
    // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let set = |res, v: u64| {
                let r = libc::rlimit {
                    rlim_cur: v as libc::rlim_t,
                    rlim_max: v as libc::rlim_t,
                };
                if libc::setrlimit(res, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            set(libc::RLIMIT_AS, mem)?;
            set(libc::RLIMIT_CPU, cpu)?;
            set(libc::RLIMIT_FSIZE, 0)?;
            set(libc::RLIMIT_CORE, 0)
        });
    }
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let pid = child.id() as i32;
    let kill_group = || {
        // SAFETY: plain syscall; the group is the child's own (process_group(0)).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    };
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        kill_group();
        let _ = child.wait();
        return Err(RunError::Io(std::io::Error::other("child pipes missing")));
    };
    let cap = limits.max_output;
    let capped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let capped_w = capped.clone();
    let out_reader = std::thread::spawn(move || -> std::io::Result<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = stdout.read(&mut buf)?;
            if n == 0 {
                return Ok((out, false));
            }
            if out.len() + n > cap {
                capped_w.store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok((out, true));
            }
            out.extend_from_slice(&buf[..n]);
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut e = Vec::new();
        // stderr is diagnostics only; keep the tail
        let _ = stderr.by_ref().take(1 << 20).read_to_end(&mut e);
        e
    });
    let deadline = Instant::now() + limits.wall;
    let status = loop {
        match child.try_wait().map_err(RunError::Io)? {
            Some(s) => break Some(s),
            // a child past its output cap would block on the full pipe until the deadline
            None if Instant::now() >= deadline
                || capped.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                break None
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let status = match status {
        Some(s) => s,
        None => {
            kill_group();
            let _ = child.wait();
            let _ = out_reader.join();
            let _ = err_reader.join();
            if capped.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(RunError::OutputTooLarge(cap));
            }
            return Err(RunError::Timeout(limits.wall));
        }
    };
    let (out, capped) = out_reader
        .join()
        .map_err(|_| RunError::Io(std::io::Error::other("reader panicked")))?
        .map_err(RunError::Io)?;
    let err = err_reader.join().unwrap_or_default();
    if capped {
        return Err(RunError::OutputTooLarge(cap));
    }
    if !status.success() {
        let text = String::from_utf8_lossy(&err);
        let tail: Vec<&str> = text
            .lines()
            .map(tidy)
            .filter(|l| !l.trim().is_empty())
            .collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
        let status = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) if s == libc::SIGXCPU || s == libc::SIGKILL => {
                format!("killed by signal {s} (CPU limit)")
            }
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "failed".into(),
        };
        return Err(RunError::Failed {
            status,
            stderr: tail,
        });
    }
    Ok(out)
}

/// An FFmpeg log line without its `[demuxer @ 0x55…] ` context: the address is the child's heap,
/// noise to a client.
fn tidy(line: &str) -> &str {
    match line.find("] ") {
        Some(i) if line.starts_with('[') && line[..i].contains(" @ 0x") => &line[i + 2..],
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_context_is_dropped() {
        assert_eq!(
            super::tidy("[mov,mp4,m4a @ 0x55f10b0711c0] moov atom not found"),
            "moov atom not found"
        );
        assert_eq!(
            super::tidy("file:/dev/stdin: Invalid data"),
            "file:/dev/stdin: Invalid data"
        );
    }
}
