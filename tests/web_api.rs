//! The web pages' server side without a browser (#13): thumbnails made at ingest and served
//! (and gone with the photo or the item), facets over a query's candidates and exact when
//! browsing, gRPC-web on the gRPC port, the anonymous role and its rate limit, CORS for the
//! configured origins only, and the Content-Security-Policy. A server without models, so it
//! runs everywhere.

mod common;

use common::*;
use mmsearch::pb;
use prost::Message;
use std::io::{Read, Write};
use std::net::TcpStream;
use tonic::Code;

const KEY: &str = "web-api-test-key";

struct HttpResponse {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// One HTTP/1.1 request on its own connection (closed by the server after the answer).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let host = addr.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut rest = &raw[end..];
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + n]);
            rest = &rest[line_end + 2 + n + 2..];
        }
        out
    } else {
        rest.to_vec()
    };
    HttpResponse {
        status,
        headers: head,
        body,
    }
}

/// A gRPC-web call as a browser makes it: returns the response messages and the status from
/// the trailers frame (or the headers, for a trailers-only answer).
fn grpc_web(
    addr: &str,
    path: &str,
    key: Option<&str>,
    msg: &impl Message,
) -> (Vec<Vec<u8>>, String) {
    let bytes = msg.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    body.extend_from_slice(&bytes);
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![
        ("content-type", "application/grpc-web+proto"),
        ("x-grpc-web", "1"),
    ];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let r = http(addr, "POST", path, &headers, &body);
    assert_eq!(r.status, 200, "{}", r.headers);
    let mut messages = Vec::new();
    let mut status = r.header("grpc-status").unwrap_or_default();
    let mut rest = &r.body[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let payload = &rest[5..5 + len];
        if rest[0] & 0x80 != 0 {
            let trailers = String::from_utf8_lossy(payload);
            status = trailers
                .lines()
                .find_map(|l| l.strip_prefix("grpc-status:"))
                .unwrap()
                .trim()
                .to_string();
        } else {
            messages.push(payload.to_vec());
        }
        rest = &rest[5 + len..];
    }
    (messages, status)
}

fn with_key<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    r
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(w, h, image::Rgb([20, 90, 200])))
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnails_facets_grpc_web_anonymous_role_and_cors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        config_with_space(
            4,
            &format!(
                "[auth]\n[[auth.keys]]\nname = \"ops\"\nroles = [\"admin\", \"ingest\", \"search\"]\nsha256 = \"{}\"\n\
                 [auth.anonymous]\nrequests_per_second = 0.2\nburst = 12\n\
                 [web]\norigins = [\"https://shop.example.com\"]\n",
                mmsearch::server::auth::hash_key(KEY)
            ),
        ),
    )
    .unwrap();
    let server = Server::start_raw(&data, &config, &["--no-models"]);
    let addr = server.addr.clone();

    let v = |i: usize| {
        let mut x = vec![0.1f32; 4];
        x[i % 4] = 1.0;
        x
    };
    let mut items = vec![
        item("a1", "A one", "a", 5.0, v(0)),
        item("a2", "A two", "a", 20.0, v(1)),
        item("a3", "A three", "a", 60.0, v(2)),
        item("b1", "B one", "b", 120.0, v(3)),
        item("b2", "B two", "b", 300.0, v(0)),
        item("c1", "C one", "c", 20_000.0, v(1)),
    ];
    items[0].images = vec![png(600, 300)];
    items[3].images = vec![png(100, 200)];
    let reqs: Vec<pb::UpsertRequest> = items
        .iter()
        .cloned()
        .map(|i| pb::UpsertRequest { item: Some(i) })
        .collect();
    let summary = server
        .ingest()
        .await
        .upsert(with_key(tokio_stream::iter(reqs)))
        .await
        .expect("upsert with the key")
        .into_inner();
    assert_eq!(summary.accepted, 6, "{summary:?}");

    // Thumbnails: made from the first photo, shrunk to fit 320 px (never enlarged).
    let auth = format!("Bearer {KEY}");
    let t = http(&addr, "GET", "/images/a1", &[("authorization", &auth)], b"");
    assert_eq!(t.status, 200, "{}", t.headers);
    assert_eq!(t.header("content-type").as_deref(), Some("image/jpeg"));
    assert!(t.header("content-security-policy").is_some());
    let img = image::load_from_memory(&t.body).unwrap();
    assert_eq!((img.width(), img.height()), (320, 160));
    let small = http(&addr, "GET", "/images/b1", &[("authorization", &auth)], b"");
    let img = image::load_from_memory(&small.body).unwrap();
    assert_eq!((img.width(), img.height()), (100, 200));
    assert_eq!(
        http(&addr, "GET", "/images/a2", &[("authorization", &auth)], b"").status,
        404,
        "no photo, no thumbnail"
    );
    assert_eq!(
        http(
            &addr,
            "GET",
            "/images/a1",
            &[("authorization", "Bearer wrong")],
            b""
        )
        .status,
        401,
        "a wrong key is refused with an HTTP status a browser reads"
    );
    // A replacement without photos drops the thumbnail; a delete too.
    let mut ingest = server.ingest().await;
    ingest
        .upsert(with_key(tokio_stream::iter(vec![pb::UpsertRequest {
            item: Some(item("a1", "A one", "a", 5.0, v(0))),
        }])))
        .await
        .unwrap();
    assert_eq!(
        http(&addr, "GET", "/images/a1", &[("authorization", &auth)], b"").status,
        404
    );
    ingest
        .delete(with_key(pb::DeleteRequest {
            ids: vec!["b1".into()],
        }))
        .await
        .unwrap();
    assert_eq!(
        http(&addr, "GET", "/images/b1", &[("authorization", &auth)], b"").status,
        404
    );

    // Facets over the query's candidates (all five live items are within the default 200).
    let mut search = server.search().await;
    let facets = |mut r: pb::SearchRequest, n: u32| {
        r.facets = true;
        r.facet_candidates = n;
        with_key(r)
    };
    let r = search
        .search(facets(vector_query(v(0), 2), 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.hits.len(), 2, "the page stays top_k");
    assert_eq!(r.facet_counted, 5);
    let cats: Vec<(String, u64)> = r
        .categories
        .iter()
        .map(|c| (c.value.clone(), c.count))
        .collect();
    assert_eq!(
        cats,
        vec![("a".into(), 3), ("b".into(), 1), ("c".into(), 1)]
    );
    let ranges: Vec<(f64, f64, u64)> = r
        .price_ranges
        .iter()
        .map(|p| (p.min, p.max, p.count))
        .collect();
    assert_eq!(
        ranges,
        vec![
            (0.0, 10.0, 1),
            (10.0, 25.0, 1),
            (50.0, 100.0, 1),
            (250.0, 500.0, 1),
            (10000.0, 0.0, 1)
        ]
    );
    let r = search
        .search(facets(vector_query(v(0), 5), 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.facet_counted, 2, "only the top 2 candidates counted");
    // Browsing: exact over every match of the filter.
    let browse = pb::SearchRequest {
        top_k: 1,
        filter: Some(pb::Filter {
            price_min: Some(10.0),
            ..Default::default()
        }),
        ..Default::default()
    };
    let r = search.search(facets(browse, 0)).await.unwrap().into_inner();
    assert_eq!((r.total, r.facet_counted), (Some(4), 4));
    let bad = search.search(facets(vector_query(v(0), 2), 1001)).await;
    assert_eq!(bad.unwrap_err().code(), Code::InvalidArgument);
    let plain = search
        .search(with_key(vector_query(v(0), 2)))
        .await
        .unwrap()
        .into_inner();
    assert!(plain.categories.is_empty() && plain.facet_counted == 0);

    // gRPC-web on the same port, as the pages call it.
    let (msgs, status) = grpc_web(
        &addr,
        "/mmsearch.v1.SearchService/Search",
        Some(KEY),
        &vector_query(v(1), 3),
    );
    assert_eq!(status, "0");
    let resp = pb::SearchResponse::decode(&msgs[0][..]).unwrap();
    assert_eq!(resp.hits.len(), 3);
    let (msgs, status) = grpc_web(
        &addr,
        "/mmsearch.v1.AdminService/Status",
        Some(KEY),
        &pb::StatusRequest {},
    );
    assert_eq!(status, "0");
    assert_eq!(pb::StatusResponse::decode(&msgs[0][..]).unwrap().items, 5);

    // The pages and CSP; CORS only for the configured origin.
    let page = http(&addr, "GET", "/", &[], b"");
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(String::from_utf8_lossy(&page.body).contains("/assets/shop.js"));
    assert_eq!(http(&addr, "GET", "/assets/nope.js", &[], b"").status, 404);
    let preflight = |origin: &str| {
        http(
            &addr,
            "OPTIONS",
            "/mmsearch.v1.SearchService/Search",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "content-type,x-grpc-web,authorization",
                ),
            ],
            b"",
        )
    };
    assert_eq!(
        preflight("https://shop.example.com")
            .header("access-control-allow-origin")
            .as_deref(),
        Some("https://shop.example.com")
    );
    assert_eq!(
        preflight("https://evil.example").header("access-control-allow-origin"),
        None
    );

    // The anonymous role: search without a key, but nothing else; then its rate limit.
    let (_, status) = grpc_web(
        &addr,
        "/mmsearch.v1.SearchService/Search",
        None,
        &vector_query(v(1), 1),
    );
    assert_eq!(status, "0", "anonymous search");
    let (_, status) = grpc_web(
        &addr,
        "/mmsearch.v1.AdminService/Status",
        None,
        &pb::StatusRequest {},
    );
    assert_eq!(status, (Code::Unauthenticated as i32).to_string());
    let denied = server
        .ingest()
        .await
        .delete(pb::DeleteRequest {
            ids: vec!["a2".into()],
        })
        .await;
    assert_eq!(denied.unwrap_err().code(), Code::Unauthenticated);
    let mut codes = Vec::new();
    for _ in 0..15 {
        let r = search.search(vector_query(v(2), 1)).await;
        codes.push(r.err().map(|s| s.code()));
    }
    assert!(
        codes.contains(&Some(Code::ResourceExhausted)),
        "the burst of 12 runs out: {codes:?}"
    );
    // Keys are not rate-limited.
    assert!(search.search(with_key(vector_query(v(2), 1))).await.is_ok());
}
