//! The web pages (#13): a shopper page and an admin page, compiled into the binary and served
//! on the gRPC port, where the browser calls the real API through gRPC-web (`tonic-web`). Same
//! origin as the API, so the pages need no CORS; `[web] origins` lets pages hosted elsewhere
//! call it too. The browser encodes protobuf itself from `/assets/schema.json`, which is made
//! here from the server's own descriptor set, so page and server can never disagree on field
//! numbers.
//!
//! Only the pages and their assets are open; thumbnails (`/images/{id}`) need the search role
//! (or the anonymous role) like a search does — the auth layer checks them by path.

use crate::engine::Engine;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, LazyLock};

/// `[web]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Serve the pages (`/`, `/admin`) and thumbnails (`/images/{id}`) on the gRPC port.
    /// gRPC-web itself is always accepted.
    pub enabled: bool,
    /// Origins (`https://shop.example.com`) whose pages may call the API from a browser (CORS).
    /// The server's own pages need none.
    pub origins: Vec<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            origins: Vec::new(),
        }
    }
}

impl WebConfig {
    pub fn validate(&self) -> Result<(), String> {
        for o in &self.origins {
            let ok = (o.starts_with("http://") || o.starts_with("https://"))
                && !o.ends_with('/')
                && HeaderValue::from_str(o).is_ok();
            if !ok {
                return Err(format!(
                    "web.origins: {o:?} must be a scheme and host (and port), like \"https://shop.example.com\""
                ));
            }
        }
        Ok(())
    }
}

/// Paths anyone may fetch: the pages and their assets (nothing secret is in them).
pub fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/admin" | "/favicon.ico") || path.starts_with("/assets/")
}

/// Thumbnails: readable with the role a search needs.
pub fn is_image(path: &str) -> bool {
    path.starts_with("/images/")
}

/// Scripts, styles, images and API calls from this origin only; no inline code (the pages
/// have none), no frames, no plugins. `blob:` for thumbnails fetched with the API key and for
/// the microphone recording's playback; `data:` for none of ours but harmless for images.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
connect-src 'self'; media-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    body: &'static [u8],
    content_type: &'static str,
}

macro_rules! asset {
    ($file:literal, $ct:literal) => {
        Asset {
            body: include_bytes!(concat!("web/", $file)),
            content_type: $ct,
        }
    };
}

fn asset(name: &str) -> Option<Asset> {
    Some(match name {
        "index.html" => asset!("index.html", "text/html; charset=utf-8"),
        "admin.html" => asset!("admin.html", "text/html; charset=utf-8"),
        "style.css" => asset!("style.css", "text/css; charset=utf-8"),
        "grpc.js" => asset!("grpc.js", "text/javascript; charset=utf-8"),
        "shop.js" => asset!("shop.js", "text/javascript; charset=utf-8"),
        "admin.js" => asset!("admin.js", "text/javascript; charset=utf-8"),
        "wav.js" => asset!("wav.js", "text/javascript; charset=utf-8"),
        _ => return None,
    })
}

fn with_headers(mut resp: Response, cache: &'static str) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

fn serve_asset(name: &str) -> Response {
    match asset(name) {
        // For page development: `MMSEARCH_WEB_DIR` serves the same file names from disk, so
        // an edit shows on reload without rebuilding the server.
        Some(a) => with_headers(
            match std::env::var_os("MMSEARCH_WEB_DIR")
                .and_then(|d| std::fs::read(std::path::Path::new(&d).join(name)).ok())
            {
                Some(body) => ([(header::CONTENT_TYPE, a.content_type)], body).into_response(),
                None => ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response(),
            },
            "no-cache",
        ),
        None => with_headers(
            (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
            "no-cache",
        ),
    }
}

/// The message and enum definitions of `mmsearch.v1` as the pages' codec reads them:
/// `{"messages": {"SearchRequest": [[name, number, type, repeated, type_name, oneof], …]},
///   "enums": {"SearchMode": {"SEARCH_MODE_VECTOR": 1, …}}, "maps": ["Item.AttributesEntry", …]}`.
/// Types are `FieldDescriptorProto.Type` numbers; message and enum names drop the package.
static SCHEMA: LazyLock<Vec<u8>> = LazyLock::new(|| {
    use prost::Message;
    use serde_json::{json, Map, Value};
    let fds =
        prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap_or_default();
    let mut messages = Map::new();
    let mut enums = Map::new();
    let mut maps = Vec::new();
    let strip = |t: &str| t.trim_start_matches(".mmsearch.v1.").to_string();
    fn walk(
        prefix: &str,
        m: &prost_types::DescriptorProto,
        messages: &mut Map<String, Value>,
        enums: &mut Map<String, Value>,
        maps: &mut Vec<String>,
        strip: &dyn Fn(&str) -> String,
    ) {
        let name = format!("{prefix}{}", m.name());
        let fields: Vec<Value> = m
            .field
            .iter()
            .map(|f| {
                // proto3 `optional` is a synthetic one-field oneof; only real oneofs matter here.
                let oneof = match (f.oneof_index, f.proto3_optional()) {
                    (Some(i), false) => json!(i),
                    _ => Value::Null,
                };
                json!([
                    f.name(),
                    f.number(),
                    f.r#type() as i32,
                    f.label() == prost_types::field_descriptor_proto::Label::Repeated,
                    strip(f.type_name()),
                    oneof
                ])
            })
            .collect();
        if m.options.as_ref().is_some_and(|o| o.map_entry()) {
            maps.push(name.clone());
        }
        messages.insert(name.clone(), Value::Array(fields));
        for nested in &m.nested_type {
            walk(&format!("{name}."), nested, messages, enums, maps, strip);
        }
        for e in &m.enum_type {
            enums.insert(format!("{name}.{}", e.name()), enum_values(e));
        }
    }
    fn enum_values(e: &prost_types::EnumDescriptorProto) -> Value {
        Value::Object(
            e.value
                .iter()
                .map(|v| (v.name().to_string(), json!(v.number())))
                .collect(),
        )
    }
    for file in fds.file.iter().filter(|f| f.package() == "mmsearch.v1") {
        for m in &file.message_type {
            walk("", m, &mut messages, &mut enums, &mut maps, &strip);
        }
        for e in &file.enum_type {
            enums.insert(e.name().to_string(), enum_values(e));
        }
    }
    serde_json::to_vec(&json!({"messages": messages, "enums": enums, "maps": maps}))
        .unwrap_or_default()
});

async fn thumbnail(State(engine): State<Arc<Engine>>, Path(id): Path<String>) -> Response {
    let collection = engine.collection().clone();
    let found = tokio::task::spawn_blocking(move || collection.thumbnail(&id)).await;
    let resp = match found {
        Ok(Ok(Some(jpeg))) => ([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response(),
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, "no thumbnail\n").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading a thumbnail");
            (StatusCode::INTERNAL_SERVER_ERROR, "store error\n").into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cancelled\n").into_response(),
    };
    // Private: with auth on, a shared cache must not hand one shopper's fetch to another.
    with_headers(resp, "private, max-age=300")
}

/// The pages' routes, merged into the gRPC server's router.
pub fn router(engine: Arc<Engine>) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { serve_asset("index.html") }))
        .route("/admin", get(|| async { serve_asset("admin.html") }))
        // Browsers ask for it on every page; there is none.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/assets/schema.json",
            get(|| async {
                with_headers(
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        SCHEMA.as_slice(),
                    )
                        .into_response(),
                    "no-cache",
                )
            }),
        )
        .route(
            "/assets/{file}",
            get(|Path(file): Path<String>| async move { serve_asset(&file) }),
        )
        .route("/images/{id}", get(thumbnail))
        .with_state(engine)
}

/// gRPC-web for browsers, plain HTTP for the pages. `tonic_web`'s service answers every
/// HTTP/1 request that is not gRPC-web with 400, so page requests (HTTP/1 GET/HEAD without a
/// gRPC-web content type) go around it; everything else (gRPC over HTTP/2, gRPC-web) goes
/// through it and reaches the services as plain gRPC.
#[derive(Clone, Copy, Default)]
pub struct PagesOrGrpcWebLayer;

impl<S> tower::Layer<S> for PagesOrGrpcWebLayer {
    type Service = PagesOrGrpcWeb<S>;
    fn layer(&self, inner: S) -> Self::Service {
        PagesOrGrpcWeb { inner }
    }
}

#[derive(Clone)]
pub struct PagesOrGrpcWeb<S> {
    inner: S,
}

type Body = tonic::body::Body;

impl<S, ResBody> tower::Service<http::Request<Body>> for PagesOrGrpcWeb<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Display,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<http::Response<Body>, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        use futures::FutureExt;
        // The service that was made ready is the one that takes the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let grpc_web = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc-web"));
        let page = req.version() != http::Version::HTTP_2
            && matches!(*req.method(), http::Method::GET | http::Method::HEAD)
            && !grpc_web;
        if page {
            inner
                .call(req)
                .map(|r| r.map(|resp| resp.map(Body::new)))
                .boxed()
        } else {
            let mut web = tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), inner);
            tower::Service::call(&mut web, req).boxed()
        }
    }
}

/// CORS for the configured origins: preflight answers and the headers a gRPC-web client needs
/// to read (status and message travel in headers or trailers).
pub fn cors(config: &WebConfig) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = config
        .origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([http::Method::POST, http::Method::GET, http::Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            http::HeaderName::from_static("x-grpc-web"),
            http::HeaderName::from_static("x-user-agent"),
            http::HeaderName::from_static("grpc-timeout"),
        ])
        .expose_headers([
            http::HeaderName::from_static("grpc-status"),
            http::HeaderName::from_static("grpc-message"),
            http::HeaderName::from_static("x-request-id"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_lists_the_messages_the_pages_use() {
        let v: serde_json::Value = serde_json::from_slice(&SCHEMA).unwrap();
        let fields = v["messages"]["SearchRequest"].as_array().unwrap();
        let text = fields.iter().find(|f| f[0] == "text").unwrap();
        assert_eq!(text[1], 1);
        assert_eq!(text[2], 9); // TYPE_STRING
        assert!(!text[5].is_null(), "text is in the query oneof");
        let facets = fields.iter().find(|f| f[0] == "facets").unwrap();
        assert_eq!(facets[1], 60);
        let lw = fields.iter().find(|f| f[0] == "lexical_weight").unwrap();
        assert!(
            lw[5].is_null(),
            "proto3 optional is not a oneof for the codec"
        );
        assert!(v["messages"]["RebuildProgress"].is_array());
        assert!(v["maps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "Item.AttributesEntry"));
        assert_eq!(v["enums"]["InteractionKind"]["CLICK"], 2);
    }

    #[test]
    fn every_page_asset_is_compiled_in_and_origins_are_checked() {
        for a in [
            "index.html",
            "admin.html",
            "style.css",
            "grpc.js",
            "shop.js",
            "admin.js",
            "wav.js",
        ] {
            assert!(asset(a).is_some_and(|a| !a.body.is_empty()), "{a}");
        }
        assert!(asset("../mod.rs").is_none());
        assert!(is_public("/assets/shop.js") && is_public("/") && !is_public("/images/x"));
        let ok = WebConfig {
            enabled: true,
            origins: vec!["https://shop.example.com".into()],
        };
        assert!(ok.validate().is_ok());
        let bad = WebConfig {
            enabled: true,
            origins: vec!["shop.example.com/".into()],
        };
        assert!(bad.validate().is_err());
    }
}
