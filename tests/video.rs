//! Video end to end (#14) with the real models: the Vendure demo catalogue indexed through the
//! CLI, then video queries (narrated, silent, from a product's photo) through the CLI and gRPC,
//! video items, and bad videos refused while the server keeps serving.
//! Needs `models/setup.sh`, `deploy/demo/fetch_vendure.py`, FFmpeg + espeak-ng, and
//! `deploy/video/make-test-videos.sh` (run here, cached).

mod common;
#[path = "common/encode.rs"]
mod encode;

use common::*;
use encode::demo_catalog;
use mmsearch::pb;
use pb::search_request::Query;
use std::path::PathBuf;
use std::process::Command;
use tonic::Code;

fn videos() -> PathBuf {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/video/make-test-videos.sh"
    );
    let out = Command::new(script)
        .output()
        .expect("run make-test-videos.sh");
    assert!(
        out.status.success(),
        "make-test-videos.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn cli(server: &Server, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mmsearch"))
        .args(args)
        .arg("--server")
        .arg(&server.addr)
        .output()
        .expect("run cli");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mmsearch {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn ranked_titles(json: &str) -> (Vec<String>, String) {
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("search --json output");
    let titles = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["title"].as_str().unwrap_or_default().to_string())
        .collect();
    (
        titles,
        v["transcript"].as_str().unwrap_or_default().to_string(),
    )
}

async fn video_search(
    client: &mut pb::search_service_client::SearchServiceClient<tonic::transport::Channel>,
    bytes: Vec<u8>,
) -> Result<pb::SearchResponse, tonic::Status> {
    client
        .search(pb::SearchRequest {
            query: Some(Query::Video(bytes)),
            top_k: 5,
            explain: true,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_queries_items_and_bad_videos() {
    let dir = videos();
    let catalog = demo_catalog();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        "[fusion]\nvideo_frame_weight = 0.5\nvideo_speech_weight = 0.5\n",
    )
    .unwrap();
    let server = Server::start_with(&data, &config, &[]);
    let out = cli(&server, &["ingest", catalog.to_str().unwrap()]);
    assert!(out.contains("ingested 54 items"), "{out}");

    // A narrated pan-and-zoom over the tripod photo finds Tripod first; its transcript comes back.
    let tripod = dir.join("tripod-narrated.mp4");
    let (titles, transcript) = ranked_titles(&cli(
        &server,
        &[
            "search",
            "--json",
            "--video",
            tripod.to_str().unwrap(),
            "-k",
            "5",
        ],
    ));
    assert_eq!(
        titles.first().map(String::as_str),
        Some("Tripod"),
        "narrated video ranking {titles:?}"
    );
    assert!(
        transcript.to_lowercase().contains("tripod"),
        "transcript {transcript:?}"
    );
    let human = cli(
        &server,
        &[
            "search",
            "--video",
            tripod.to_str().unwrap(),
            "-k",
            "2",
            "--explain",
        ],
    );
    assert!(
        human.contains("transcript:") && human.contains("frames ×"),
        "{human}"
    );

    // explain shows how frames and speech made the query
    let mut client = server.search().await;
    let r = video_search(&mut client, std::fs::read(&tripod).unwrap())
        .await
        .expect("video search");
    let e = r.hits[0].explanation.as_ref().expect("explanation");
    let v = e.video.as_ref().expect("video parts");
    assert!(
        v.frames >= 1
            && (v.frame_weight - 0.5).abs() < 1e-6
            && (v.speech_weight - 0.5).abs() < 1e-6,
        "{v:?}"
    );
    assert!((v.seconds - 6.0).abs() < 0.2, "{v:?}");
    assert_eq!(e.spaces.len(), 2, "{e:?}");

    // A silent video made from a product's photo finds that product; all weight is on frames.
    for (file, title) in [
        ("laptop-silent.mp4", "Laptop"),
        ("mouse-quiet.mp4", "Wireless Optical Mouse"),
    ] {
        let r = video_search(&mut client, std::fs::read(dir.join(file)).unwrap())
            .await
            .expect(file);
        let top = r.hits[0].item.as_ref().map(|i| i.title.clone());
        assert_eq!(
            top.as_deref(),
            Some(title),
            "{file}: {:?}",
            r.hits.iter().map(|h| &h.id).collect::<Vec<_>>()
        );
        assert!(r.transcript.is_empty(), "{file}: {:?}", r.transcript);
        let v = r.hits[0]
            .explanation
            .as_ref()
            .and_then(|e| e.video.as_ref())
            .expect("video parts");
        assert_eq!((v.frame_weight, v.speech_weight), (1.0, 0.0));
    }

    // Bad videos: INVALID_ARGUMENT from the header, and the server keeps serving.
    let narrated = std::fs::read(&tripod).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated mp4", narrated[..narrated.len() / 2].to_vec()),
        (
            "text file as video",
            b"this is a text file, not a video\n".repeat(10),
        ),
        (
            "two-hour video",
            std::fs::read(dir.join("long-2h.mp4")).unwrap(),
        ),
        (
            "no video stream",
            std::fs::read(dir.join("audio-only.mp4")).unwrap(),
        ),
    ];
    for (name, bytes) in cases {
        let status = video_search(&mut client, bytes).await.expect_err(name);
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        let ok = client
            .search(pb::SearchRequest {
                query: Some(Query::Text("sofa".into())),
                top_k: 1,
                ..Default::default()
            })
            .await
            .expect("still serving");
        assert_eq!(ok.into_inner().hits.len(), 1);
    }

    // Video items: a product known only by its video (no title, no photo) is found by text, its
    // display URI comes back, and a bad video rejects only its own item.
    let item = pb::Item {
        id: "tripod-clip".into(),
        videos: vec![narrated.clone()],
        video_uris: vec!["https://cdn.example.com/tripod.mp4".into()],
        category: "Video".into(),
        ..Default::default()
    };
    let bad = pb::Item {
        id: "broken-clip".into(),
        title: "Broken".into(),
        videos: vec![b"not a video".to_vec()],
        ..Default::default()
    };
    let summary = upsert(&server, vec![item, bad]).await;
    assert_eq!(summary.accepted, 1, "{summary:?}");
    assert!(
        summary.rejected[0].reason.contains("video 0"),
        "{:?}",
        summary.rejected
    );
    let r = client
        .search(pb::SearchRequest {
            query: Some(Query::Text("camera tripod".into())),
            top_k: 1,
            filter: Some(pb::Filter {
                categories: vec!["Video".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let hit = r.hits.first().expect("the video item");
    assert_eq!(hit.id, "tripod-clip");
    assert_eq!(
        hit.item.as_ref().unwrap().video_uris,
        vec!["https://cdn.example.com/tripod.mp4".to_string()]
    );
    let status = server
        .admin()
        .await
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        status
            .spaces
            .iter()
            .all(|s| s.fresh_vectors + s.base_vectors >= 55),
        "{:?}",
        status.spaces
    );

    // The catalogue's `videos` field (paths, like `images`) through the CLI.
    let jsonl = tmp.path().join("videos.jsonl");
    std::fs::write(
        &jsonl,
        format!(
            "{{\"id\":\"laptop-clip\",\"title\":\"Laptop video\",\"videos\":[\"{}\"]}}\n",
            dir.join("laptop-silent.mp4").display()
        ),
    )
    .unwrap();
    let out = cli(&server, &["ingest", jsonl.to_str().unwrap()]);
    assert!(out.contains("ingested 1 items"), "{out}");
    let got = server
        .ingest()
        .await
        .get(pb::GetRequest {
            id: "laptop-clip".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.video_uris,
        vec![dir.join("laptop-silent.mp4").display().to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_decoder_costs_the_request_not_the_server() {
    let dir = videos();
    let tmp = tempfile::tempdir().unwrap();
    // an "ffmpeg" that hangs and ignores SIGTERM; the real ffprobe still reads the header
    let hang = tmp.path().join("ffmpeg-hangs");
    std::fs::write(&hang, "#!/bin/sh\ntrap '' TERM\nexec sleep 611.5\n").unwrap();
    std::fs::set_permissions(&hang, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[encode.video]\nffmpeg = \"{}\"\ntimeout_seconds = 1.0\n",
            hang.display()
        ),
    )
    .unwrap();
    let server = Server::start_with(&tmp.path().join("data"), &config, &[]);
    let mut client = server.search().await;
    let bytes = std::fs::read(dir.join("laptop-silent.mp4")).unwrap();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let status = video_search(&mut client, bytes.clone())
            .await
            .expect_err("hung decoder");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("did not finish"), "{status:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        // still serving
        client
            .search(pb::SearchRequest {
                query: Some(Query::Text("sofa".into())),
                top_k: 1,
                ..Default::default()
            })
            .await
            .expect("still serving");
    }
    // the hung processes were killed, not left behind
    let want: Vec<u8> = b"sleep\x00611.5\x00".to_vec();
    let left: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| !s.contains(") Z "))
        })
        .collect();
    assert!(
        left.is_empty(),
        "{} hung decoders still running",
        left.len()
    );
}
