//! Hostile or broken inputs must map to the right `EncodeError` variant, quickly, without panics.

#[path = "common/encode.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use mmsearch::encode::EncodeError;

fn fast<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    let el = t.elapsed();
    assert!(el < Duration::from_millis(500), "{what} took {el:?}");
    r
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A PNG that is only a signature + IHDR claiming `w`×`h` RGB: 33 bytes.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&w.to_be_bytes());
    chunk.extend_from_slice(&h.to_be_bytes());
    chunk.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&chunk);
    png.extend_from_slice(&crc32(&chunk).to_be_bytes());
    png
}

/// A baseline JPEG header (SOI, DQT, SOF0 claiming `w`×`h`, DHT, SOS) with no scan data.
fn jpeg_header_only(w: u16, h: u16) -> Vec<u8> {
    let mut j = vec![0xFF, 0xD8];
    // DQT: table 0, all ones
    j.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
    j.extend_from_slice(&[1u8; 64]);
    // SOF0: 8-bit, h, w, 1 component (grey), id 1, sampling 1x1, table 0
    j.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 0x08]);
    j.extend_from_slice(&h.to_be_bytes());
    j.extend_from_slice(&w.to_be_bytes());
    j.extend_from_slice(&[0x01, 0x01, 0x11, 0x00]);
    // DHT: DC table 0 with a single 1-bit code
    j.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x14, 0x00, 0x01]);
    j.extend_from_slice(&[0u8; 15]);
    j.push(0x00);
    // SOS
    j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
    j.extend_from_slice(&[0xFF, 0xD9]);
    j
}

#[test]
fn fifty_megapixel_png_and_jpeg_are_too_large() {
    let enc = encoders();
    for (name, bytes) in [
        ("png", png_header_only(8000, 6250)),
        ("jpeg", jpeg_header_only(8000, 6250)),
    ] {
        assert!(bytes.len() < 200);
        let e = fast(name, || enc.embed_images(&[&bytes])).expect_err("must fail");
        assert!(matches!(e, EncodeError::TooLarge(_)), "{name}: got {e:?}");
    }
    // just under the limit but with no pixel data: corrupt, not too large
    let e = fast("png 1000x1000 no data", || {
        enc.embed_images(&[&png_header_only(1000, 1000)])
    })
    .expect_err("must fail");
    assert!(matches!(e, EncodeError::InvalidInput(_)), "got {e:?}");
}

#[test]
fn corrupt_image_bytes_are_invalid() {
    let enc = encoders();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("text", b"definitely not an image, just some text".to_vec()),
        (
            "random",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("truncated png", {
            let mut p = png_header_only(64, 64);
            p.extend_from_slice(b"\0\0\0\x10IDAT garbage");
            p
        }),
        ("jpeg soi only", vec![0xFF, 0xD8, 0xFF]),
    ];
    for (name, bytes) in cases {
        let e = fast(name, || enc.embed_images(&[&bytes])).expect_err(name);
        assert!(
            matches!(e, EncodeError::InvalidInput(_)),
            "{name}: got {e:?}"
        );
    }
    // a valid image followed by a corrupt one: the error names the bad index
    let good = std::fs::read(models_dir().join("golden/img_gradient.png")).expect("golden png");
    let e = enc
        .embed_images(&[&good, b"junk"])
        .expect_err("batch with junk");
    assert!(
        matches!(&e, EncodeError::InvalidInput(m) if m.contains("#1")),
        "got {e:?}"
    );
}

#[test]
fn empty_text_is_invalid() {
    let enc = encoders();
    for t in ["", "   ", "\n\t"] {
        let e = fast("empty text", || enc.embed_texts(&[t])).expect_err("empty");
        assert!(
            matches!(e, EncodeError::InvalidInput(_)),
            "{t:?}: got {e:?}"
        );
        let e = enc.embed_queries(&["ok", t]).expect_err("empty query");
        assert!(
            matches!(e, EncodeError::InvalidInput(_)),
            "{t:?}: got {e:?}"
        );
    }
    // very long text is truncated (256 tokens), not rejected
    let long = "wireless ".repeat(2000);
    let v = enc.embed_texts(&[&long]).expect("long text");
    assert!(unit(&v[0]));
}

#[test]
fn non_audio_is_invalid() {
    let enc = encoders();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "text file",
            b"This is a plain text file.\nIt is not audio.\n".to_vec(),
        ),
        (
            "png",
            std::fs::read(models_dir().join("golden/img_gradient.png")).expect("png"),
        ),
        ("empty", vec![]),
        ("riff header only", b"RIFF\x24\0\0\0WAVE".to_vec()),
        ("no samples", wav_i16(&[], 16_000)),
    ];
    for (name, bytes) in cases {
        let e = fast(name, || enc.transcribe(&bytes)).expect_err(name);
        assert!(
            matches!(e, EncodeError::InvalidInput(_)),
            "{name}: got {e:?}"
        );
    }
}

#[test]
fn audio_over_30_seconds_is_too_large() {
    let enc = encoders();
    // 31 s of 8 kHz silence: rejected from the header, before resampling or the model
    let wav = wav_i16(&vec![0i16; 31 * 8000], 8000);
    let e = fast("31 s audio", || enc.transcribe(&wav)).expect_err("too long");
    assert!(matches!(e, EncodeError::TooLarge(_)), "got {e:?}");
    // exactly at the limit is accepted (silence → some transcript, possibly empty)
    let ok = wav_i16(&vec![0i16; 30 * 8000], 8000);
    let t = enc.transcribe(&ok).expect("30 s accepted");
    assert!((t.audio_seconds - 30.0).abs() < 1e-3);
    eprintln!(
        "30 s of silence -> {:?} (no_speech_prob {:.3})",
        t.text, t.no_speech_prob
    );
    assert_eq!(
        t.text, "",
        "silence must not turn into a hallucinated query"
    );
}
