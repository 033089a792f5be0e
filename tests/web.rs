//! The web pages in a real browser (#13): Debian's headless Chromium driven over WebDriver
//! (`chromedriver`), against a real server with the models and the Vendure demo catalogue,
//! auth on with an anonymous shopper role. Skips (saying so) only when Chromium or its driver
//! is not installed; `deploy/install-deps.sh` installs both, so under `deploy/test.sh` it runs.
//!
//! Writes screenshots and the measured page weight / paint time to
//! `target/tmp/web-screenshots/` (`shop-desktop.png`, `shop-phone.png`, `admin.png`,
//! `metrics.json`).

mod common;
#[path = "common/encode.rs"]
mod encode;

use common::*;
use encode::{demo_catalog, speak};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN_KEY: &str = "test-admin-key";
const SHOP_KEY: &str = "test-shop-key";

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

/// A minimal W3C WebDriver client: JSON over HTTP/1.1 to chromedriver on localhost.
struct Driver {
    port: u16,
    session: String,
    _process: DriverProcess,
}

/// chromedriver in its own process group, with the browsers it starts: killed as a whole
/// however the test ends (a failed session start included), so no Chromium outlives the test.
struct DriverProcess(Child);

impl Drop for DriverProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver may keep the connection open: read the head, then Content-Length bytes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        let n = s.read(&mut buf).expect("read chromedriver response");
        assert!(n > 0, "chromedriver closed the connection");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("content-length"))
        .unwrap_or_else(|| panic!("{method} {path}: no content-length in {head}"));
    while raw.len() < head_end + len {
        let n = s.read(&mut buf).expect("read chromedriver body");
        assert!(n > 0, "chromedriver closed the connection early");
        raw.extend_from_slice(&buf[..n]);
    }
    let payload = String::from_utf8_lossy(&raw[head_end..head_end + len]).into_owned();
    serde_json::from_str(&payload).unwrap_or_else(|e| panic!("{method} {path}: {e}: {head}"))
}

impl Driver {
    fn start(chrome_args: &[String]) -> Driver {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        use std::os::unix::process::CommandExt;
        let process = DriverProcess(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": which("chromium").unwrap(), "args": chrome_args}
        }}});
        let r = http(port, "POST", "/session", Some(&caps));
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session: {r}"))
            .to_string();
        Driver {
            port,
            session,
            _process: process,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        );
        if r["value"].get("error").is_some() {
            panic!("webdriver {method} {path}: {}", r["value"]);
        }
        r["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Polls `expr` (a JS expression) until it is truthy.
    fn wait(&self, what: &str, expr: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.js(&format!("return {expr};"), json!([]));
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            if Instant::now() > deadline {
                let status = self.js("return document.getElementById('status') && document.getElementById('status').textContent;", json!([]));
                panic!("timed out waiting for {what}; page status: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn searches_done(&self) -> u64 {
        self.js(
            "return Number(document.body.dataset.searchDone || 0);",
            json!([]),
        )
        .as_u64()
        .unwrap_or(0)
    }

    /// Waits for the search after `before` to finish painting; returns the cards' titles.
    fn results_after(&self, before: u64) -> Vec<String> {
        self.wait(
            "search results",
            &format!("Number(document.body.dataset.searchDone || 0) > {before} || document.body.dataset.searchError"),
            Duration::from_secs(120),
        );
        let err = self.js("return document.body.dataset.searchError ? document.getElementById('status').textContent : null;", json!([]));
        assert!(err.is_null(), "the search failed: {err}");
        self.titles()
    }

    fn titles(&self) -> Vec<String> {
        self.js(
            "return [...document.querySelectorAll('#results .card h3')].map(e => e.textContent);",
            json!([]),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
    }

    /// Emulates a screen of `w`×`h` CSS pixels (a phone: mobile viewport, 3× pixels) through
    /// Chromium's DevTools protocol; `None` goes back to the window's own size.
    fn emulate(&self, screen: Option<(u32, u32)>) {
        let (cmd, params) = match screen {
            Some((w, h)) => (
                "Emulation.setDeviceMetricsOverride",
                json!({"width": w, "height": h, "deviceScaleFactor": 3, "mobile": true}),
            ),
            None => ("Emulation.clearDeviceMetricsOverride", json!({})),
        };
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        );
    }

    fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        std::fs::write(path, base64_decode(b64.as_str().unwrap())).unwrap();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !b"=\r\n".contains(c)).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(val(*c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn wav_seconds(path: &Path) -> f64 {
    let r = hound::WavReader::open(path).unwrap();
    r.duration() as f64 / r.spec().sample_rate as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopper_and_admin_pages_in_chromium() {
    if which("chromium").is_none() || which("chromedriver").is_none() {
        eprintln!(
            "SKIPPED web.rs: Debian's `chromium` and `chromium-driver` are not installed \
             (deploy/install-deps.sh installs them); the browser test did not run"
        );
        return;
    }
    let catalog = demo_catalog();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("c.toml");
    let hash = mmsearch::server::auth::hash_key;
    std::fs::write(
        &config,
        format!(
            "[auth]\n\
             [[auth.keys]]\nname = \"ops\"\nroles = [\"admin\", \"ingest\", \"search\"]\nsha256 = \"{}\"\n\
             [[auth.keys]]\nname = \"shop\"\nroles = [\"search\", \"ingest\"]\nsha256 = \"{}\"\n\
             [auth.anonymous]\nrequests_per_second = 50\nburst = 200\n",
            hash(ADMIN_KEY),
            hash(SHOP_KEY)
        ),
    )
    .unwrap();
    let server = Server::start_raw(&data, &config, &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_mmsearch"))
        .args([
            "ingest",
            catalog.to_str().unwrap(),
            "--server",
            &server.addr,
        ])
        .env("MMSEARCH_API_KEY", ADMIN_KEY)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ingested 54 items"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let base = server.addr.clone();

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let wav = tmp.path().join("mouse.wav");
    speak("wireless mouse", &wav);
    let profile = tmp.path().join("chrome-profile");
    let args: Vec<String> = [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("--use-file-for-fake-audio-capture={}", wav.display()),
        format!("--user-data-dir={}", profile.display()),
    ])
    .collect();
    let d = Driver::start(&args);

    // The page loads without a key (anonymous role) and browses the catalogue with facets.
    d.goto(&format!("{base}/"));
    let titles = d.results_after(0);
    assert_eq!(
        titles.len(),
        12,
        "a first page of the catalogue: {titles:?}"
    );
    let weight = d.js(
        "const nav = performance.getEntriesByType('navigation')[0];
         const res = performance.getEntriesByType('resource').filter(r => r.initiatorType !== 'fetch' || r.name.includes('/assets/'));
         const assets = res.filter(r => !r.name.includes('/images/'));
         return {html: nav.encodedBodySize, assets: assets.map(r => [r.name.replace(location.origin, ''), r.encodedBodySize]),
                 total: nav.encodedBodySize + assets.reduce((n, r) => n + r.encodedBodySize, 0)};",
        json!([]),
    );
    let page_bytes = weight["total"].as_u64().unwrap();
    assert!(
        page_bytes > 10_000 && page_bytes < 200_000,
        "page weight without photos: {weight}"
    );
    let facets = d.js(
        "return document.querySelectorAll('#facets .facet').length;",
        json!([]),
    );
    assert!(facets.as_u64().unwrap() >= 3, "facets shown: {facets}");

    // Words.
    let n = d.searches_done();
    d.type_into("#q", "camera on a tripod\n");
    let titles = d.results_after(n);
    assert_eq!(
        titles.first().map(String::as_str),
        Some("Tripod"),
        "{titles:?}"
    );
    let paint = d.js("return window.mmsLastSearch;", json!([]));
    let thumbs_ok = d.wait(
        "thumbnails",
        "[...document.querySelectorAll('#results .card img')].filter(i => i.complete && i.naturalWidth > 0).length",
        Duration::from_secs(20),
    );
    assert!(
        thumbs_ok.as_u64().unwrap() >= 6,
        "thumbnails painted: {thumbs_ok}"
    );
    d.screenshot(&shots.join("shop-desktop.png"));

    // A category facet narrows the results to that category.
    let category = d
        .js(
            "const b = document.querySelector('#facets .facet[data-category]'); return b && b.dataset.category;",
            json!([]),
        )
        .as_str()
        .unwrap()
        .to_string();
    let n = d.searches_done();
    d.click("#facets .facet[data-category]");
    d.results_after(n);
    let metas = d.js(
        "return [...document.querySelectorAll('#results .card .meta')].map(e => e.textContent);",
        json!([]),
    );
    assert!(
        metas
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m.as_str().unwrap().ends_with(&category)),
        "filtered to {category}: {metas}"
    );

    // "Why this result" shows the breakdown the API returns with explain.
    d.click("#results .card .why");
    let why = d.wait(
        "why dialog",
        "document.getElementById('why').open && document.getElementById('why-body').textContent",
        Duration::from_secs(5),
    );
    assert!(why.as_str().unwrap().contains("Similarity"), "why: {why}");
    d.js("document.getElementById('why').close();", json!([]));

    // A product photo (uploaded through the file input) finds that product first.
    let lines: Vec<Value> = std::fs::read_to_string(&catalog)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let product = &lines[9];
    let photo = catalog
        .parent()
        .unwrap()
        .join(product["images"][0].as_str().unwrap());
    let n = d.searches_done();
    let input = d.find("#photo");
    d.cmd(
        "POST",
        &format!("/element/{input}/value"),
        Some(json!({"text": photo.to_str().unwrap()})),
    );
    let titles = d.results_after(n);
    assert_eq!(
        titles.first().map(String::as_str),
        product["title"].as_str(),
        "photo of {}: {titles:?}",
        product["title"]
    );

    // The microphone: Chromium's fake capture device plays the spoken WAV.
    let n = d.searches_done();
    d.click("#mic");
    d.wait(
        "recording",
        "document.getElementById('mic').getAttribute('aria-pressed') === 'true'",
        Duration::from_secs(10),
    );
    // The fake device loops the file from wherever it is when capture starts: twice its
    // length holds the whole phrase at least once.
    std::thread::sleep(Duration::from_secs_f64(2.0 * wav_seconds(&wav) + 0.3));
    d.click("#mic");
    let titles = d.results_after(n);
    let transcript = d
        .js(
            "const t = document.getElementById('transcript'); return t && t.textContent;",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        transcript.to_lowercase().contains("mouse"),
        "transcript shown: {transcript:?}"
    );
    assert!(
        titles.iter().take(3).any(|t| t == "Wireless Optical Mouse"),
        "voice ranking {titles:?} for {transcript:?}"
    );

    // "More like this" on the first card: similar items, the item itself left out.
    let first = titles[0].clone();
    let n = d.searches_done();
    d.click("#results .card .more");
    let similar = d.results_after(n);
    assert!(
        !similar.is_empty() && !similar.contains(&first),
        "more like {first}: {similar:?}"
    );
    let info = d.js(
        "return document.getElementById('query-info').textContent;",
        json!([]),
    );
    assert!(info.as_str().unwrap().contains(&first), "{info}");

    // Product details (a click, recorded for the shopper id) with similar items; then the
    // "for you" row appears from the recorded click.
    d.click("#results .card .title");
    d.wait(
        "similar items in the detail view",
        "document.getElementById('detail').open && document.querySelectorAll('#detail-similar .mini').length",
        Duration::from_secs(30),
    );
    d.wait(
        "the for-you row",
        "!document.getElementById('for-you').hidden && document.querySelectorAll('#for-you-list .mini').length",
        Duration::from_secs(30),
    );
    d.js("document.getElementById('detail').close();", json!([]));

    // Phone width.
    d.emulate(Some((390, 844)));
    let n = d.searches_done();
    d.type_into("#q", "camera on a tripod\n");
    d.results_after(n);
    // (A mobile viewport grows to fit wide content, so compare with the screen's 390 px.)
    let width = d.js("return document.documentElement.scrollWidth;", json!([]));
    assert!(
        width.as_i64().unwrap() <= 390,
        "no horizontal scrolling at phone width: the page is {width} px wide"
    );
    d.js("window.scrollTo(0, 0);", json!([]));
    d.screenshot(&shots.join("shop-phone.png"));
    d.emulate(None);

    // Admin: a key without the admin role cannot rebuild; the admin key can, with progress.
    d.goto(&format!("{base}/admin"));
    d.type_into("#admin-key", &format!("{SHOP_KEY}\n"));
    d.wait(
        "status refused",
        "document.body.dataset.status === 'error'",
        Duration::from_secs(10),
    );
    d.click("#rebuild");
    let refused = d.wait(
        "rebuild refused",
        "document.body.dataset.rebuild === 'error' && document.getElementById('rebuild-phase').textContent",
        Duration::from_secs(10),
    );
    assert!(
        refused.as_str().unwrap().contains("not an admin key"),
        "{refused}"
    );
    d.type_into("#admin-key", &format!("{ADMIN_KEY}\n"));
    d.wait(
        "status",
        "document.body.dataset.status === 'loaded'",
        Duration::from_secs(10),
    );
    let items = d.js(
        "return document.getElementById('stats').textContent;",
        json!([]),
    );
    assert!(items.as_str().unwrap().contains("54"), "{items}");
    d.click("#rebuild");
    d.wait(
        "rebuild done",
        "document.body.dataset.rebuild === 'done' || document.body.dataset.rebuild === 'error'",
        Duration::from_secs(300),
    );
    let (phase, updates, bar) = (
        d.js(
            "return document.getElementById('rebuild-phase').textContent;",
            json!([]),
        ),
        d.js(
            "return Number(document.body.dataset.rebuildUpdates || 0);",
            json!([]),
        ),
        d.js(
            "const b = document.getElementById('rebuild-bar'); return [b.value, b.max];",
            json!([]),
        ),
    );
    assert!(phase.as_str().unwrap().starts_with("Done"), "{phase}");
    assert!(
        updates.as_u64().unwrap() >= 2,
        "progress updates: {updates}"
    );
    assert_eq!(bar[0], bar[1], "the bar ends full");
    d.wait(
        "status after rebuild",
        "document.body.dataset.status === 'loaded'",
        Duration::from_secs(10),
    );
    d.js("window.scrollTo(0, 0);", json!([]));
    d.screenshot(&shots.join("admin.png"));

    let metrics = json!({
        "page_weight_bytes_without_photos": weight,
        "text_search": paint,
        "load": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    });
    std::fs::write(
        shots.join("metrics.json"),
        serde_json::to_string_pretty(&metrics).unwrap(),
    )
    .unwrap();
    eprintln!(
        "web pages: page weight without photos {page_bytes} bytes; text search: {paint}; screenshots in {}",
        shots.display()
    );
}
