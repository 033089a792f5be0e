//! End to end with the real models: the Vendure demo catalogue indexed through the CLI, then
//! text, photo and voice queries through the CLI, and bad media through gRPC.
//! Needs `models/setup.sh` and `deploy/demo/fetch_vendure.py` (both run by deploy/test.sh).

mod common;
#[path = "common/encode.rs"]
mod encode;

use common::*;
use encode::{demo_catalog, speak};
use mmsearch::pb;
use pb::search_request::Query;
use std::process::Command;
use tonic::Code;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendure_demo_text_photo_voice_and_bad_media() {
    let catalog = demo_catalog();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("c.toml");
    std::fs::write(&config, "").unwrap();
    let server = Server::start_with(&data, &config, &[]);

    let out = cli(&server, &["ingest", catalog.to_str().unwrap()]);
    assert!(out.contains("ingested 54 items"), "{out}");

    let (titles, _) = ranked_titles(&cli(
        &server,
        &[
            "search",
            "--json",
            "--text",
            "camera on a tripod",
            "-k",
            "5",
        ],
    ));
    assert_eq!(
        titles.first().map(String::as_str),
        Some("Tripod"),
        "text query ranking: {titles:?}"
    );

    // A product's own photo finds that product first.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&catalog)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut photo_hits = 0;
    for product in lines.iter().step_by(9) {
        let photo = product["images"][0].as_str().unwrap();
        let (titles, _) = ranked_titles(&cli(
            &server,
            &["search", "--json", "--image", photo, "-k", "3"],
        ));
        assert_eq!(
            titles.first().map(String::as_str),
            product["title"].as_str(),
            "photo of {}",
            product["title"]
        );
        photo_hits += 1;
    }
    assert!(photo_hits >= 6);

    // Voice: espeak-ng renders the query; the transcript is printed and the mouse ranks top 3.
    let wav = tmp.path().join("q.wav");
    speak("wireless mouse", &wav);
    let (titles, transcript) = ranked_titles(&cli(
        &server,
        &[
            "search",
            "--json",
            "--voice",
            wav.to_str().unwrap(),
            "-k",
            "3",
        ],
    ));
    assert!(
        transcript.to_lowercase().contains("mouse"),
        "transcript {transcript:?}"
    );
    assert!(
        titles.iter().any(|t| t == "Wireless Optical Mouse"),
        "voice ranking {titles:?} for {transcript:?}"
    );
    let human = cli(
        &server,
        &["search", "--voice", wav.to_str().unwrap(), "-k", "3"],
    );
    assert!(human.contains("transcript:"), "{human}");

    // Bad media: clear INVALID_ARGUMENT, and the server keeps serving.
    let mut client = server.search().await;
    let mut big_png = Vec::new();
    {
        let img = image::GrayImage::new(8000, 6250);
        img.write_to(
            &mut std::io::Cursor::new(&mut big_png),
            image::ImageFormat::Png,
        )
        .unwrap();
    }
    let mut long_wav = std::io::Cursor::new(Vec::new());
    {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut long_wav, spec).unwrap();
        for i in 0..16_000 * 31 {
            w.write_sample(((i as f32 * 0.05).sin() * 3000.0) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
    }
    let mut corrupt_jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    corrupt_jpeg.extend(std::iter::repeat_n(0x42u8, 5000));
    let cases: Vec<(&str, Query)> = vec![
        ("corrupt image", Query::Image(corrupt_jpeg)),
        ("50 megapixel image", Query::Image(big_png)),
        (
            "text file as audio",
            Query::Audio(b"this is a text file, not audio\n".to_vec()),
        ),
        ("audio over 30 s", Query::Audio(long_wav.into_inner())),
        ("empty text", Query::Text(String::new())),
    ];
    for (name, q) in cases {
        let r = client
            .search(pb::SearchRequest {
                query: Some(q),
                top_k: 5,
                ..Default::default()
            })
            .await;
        let status = r.expect_err(name);
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

    // The spoken language can be given instead of detected: "en" is what tiny.en hears anyway;
    // "zh" needs a multilingual speech model and is refused, not mistranscribed.
    let spoken = std::fs::read(&wav).unwrap();
    let heard = client
        .search(pb::SearchRequest {
            query: Some(Query::Audio(spoken.clone())),
            top_k: 3,
            speech_language: "en".into(),
            ..Default::default()
        })
        .await
        .expect("voice query with language en")
        .into_inner();
    assert!(
        heard.transcript.to_lowercase().contains("mouse"),
        "{heard:?}"
    );
    let refused = client
        .search(pb::SearchRequest {
            query: Some(Query::Audio(spoken)),
            top_k: 3,
            speech_language: "zh".into(),
            ..Default::default()
        })
        .await
        .expect_err("zh on an English-only model");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("English-only"), "{refused:?}");

    // A corrupt photo rejects only its own item; the rest of the stream is indexed.
    let bad = pb::Item {
        id: "broken".into(),
        title: "Broken photo".into(),
        images: vec![b"not an image".to_vec()],
        ..Default::default()
    };
    let good = pb::Item {
        id: "lamp-2".into(),
        title: "Desk lamp".into(),
        ..Default::default()
    };
    let summary = upsert(&server, vec![bad, good]).await;
    assert_eq!(summary.accepted, 1);
    assert_eq!(summary.rejected.len(), 1);
    assert!(
        summary.rejected[0].reason.contains("photo 0"),
        "{:?}",
        summary.rejected
    );
    let mut ing = server.ingest().await;
    assert_eq!(
        ing.get(pb::GetRequest {
            id: "broken".into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    ing.delete(pb::DeleteRequest {
        ids: vec!["lamp-2".into()],
    })
    .await
    .unwrap();

    // Status reports the models and the provider actually in use.
    let status = server
        .admin()
        .await
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.items, 54);
    assert!(
        status.models.iter().any(|m| m.provider == "cpu"),
        "{:?}",
        status.models
    );
    assert!(status.models.len() >= 3);
}
