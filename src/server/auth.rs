//! Access control: API keys with roles, checked before any service sees a request.
//!
//! Keys arrive as `authorization: Bearer <key>` metadata. The config holds only SHA-256 hashes
//! of keys, so a leaked config file does not leak credentials. The presented key is hashed and
//! compared against every configured hash in constant time, without stopping at the first
//! match, so response timing says nothing about how close a guess was.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The RPCs that serve queries (SearchService).
    Search,
    /// The RPCs that write the catalogue (IngestService).
    Ingest,
    /// AdminService, and any path no service's role table lists.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Search => "search",
            Role::Ingest => "ingest",
            Role::Admin => "admin",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds the key (logged with each request; never the key itself).
    pub name: String,
    pub roles: Vec<Role>,
    /// Hex SHA-256 of the key (`mmsearch keygen` prints key and hash).
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Off only when set explicitly (`enabled = false` or `serve --insecure-no-auth`).
    pub enabled: bool,
    pub keys: Vec<ApiKeyConfig>,
    /// `[auth.anonymous]`: requests without a key may search and record clicks (the shopper
    /// page without a key), rate-limited per client address. Off when absent.
    pub anonymous: Option<AnonymousConfig>,
}

/// The anonymous role: only [`ANONYMOUS_PATHS`] (and thumbnails), at most `requests_per_second`
/// per client IP address on average with bursts of `burst`; beyond that RESOURCE_EXHAUSTED.
/// Behind a reverse proxy every shopper shares the proxy's address (and its budget).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnonymousConfig {
    pub requests_per_second: f64,
    pub burst: u32,
}

impl Default for AnonymousConfig {
    fn default() -> Self {
        AnonymousConfig {
            requests_per_second: 5.0,
            burst: 40,
        }
    }
}

/// What a request without a key may call when the anonymous role is on: search, "for you"
/// and "more like these", and recording a shopper's clicks.
pub const ANONYMOUS_PATHS: &[&str] = &[
    "/mmsearch.v1.SearchService/Search",
    "/mmsearch.v1.RecommendService/RecordInteractions",
    "/mmsearch.v1.RecommendService/RecommendForUser",
    "/mmsearch.v1.RecommendService/Recommend",
];

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            keys: Vec::new(),
            anonymous: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthConfigError {
    #[error("auth is enabled but no [[auth.keys]] are configured: add keys (`mmsearch keygen --name NAME --role search`) or disable auth explicitly (`serve --insecure-no-auth`)")]
    NoKeys,
    #[error("api key {0:?}: sha256 must be 64 hex digits")]
    BadHash(String),
    #[error("api key {0:?}: at least one role is required")]
    NoRoles(String),
    #[error("auth.anonymous: requests_per_second must be > 0 and burst ≥ 1")]
    BadAnonymous,
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        if let Some(a) = &self.anonymous {
            if !(a.requests_per_second > 0.0 && a.requests_per_second.is_finite()) || a.burst == 0 {
                return Err(AuthConfigError::BadAnonymous);
            }
        }
        if !self.enabled {
            return Ok(());
        }
        if self.keys.is_empty() && self.anonymous.is_none() {
            return Err(AuthConfigError::NoKeys);
        }
        for k in &self.keys {
            if parse_hash(&k.sha256).is_none() {
                return Err(AuthConfigError::BadHash(k.name.clone()));
            }
            if k.roles.is_empty() {
                return Err(AuthConfigError::NoRoles(k.name.clone()));
            }
        }
        Ok(())
    }
}

fn parse_hash(hex_digest: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_digest.trim()).ok()?;
    bytes.try_into().ok()
}

/// Hex SHA-256 of a key, as stored in the config.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A fresh random key: `mms_` and 32 random bytes in hex.
pub fn generate_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    // ThreadRng is a CSPRNG (ChaCha) seeded from the OS.
    rand::rng().fill_bytes(&mut bytes);
    format!("mms_{}", hex::encode(bytes))
}

struct Key {
    name: String,
    roles: Vec<Role>,
    hash: [u8; 32],
}

/// The verdict on one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The path needs no key (health checks, reflection), or auth is off.
    Open,
    Allowed {
        key_name: String,
    },
    /// No key, and the anonymous role may call the path (subject to its rate limit).
    Anonymous,
    Unauthenticated(&'static str),
    PermissionDenied {
        key_name: String,
        needs: Role,
    },
}

pub struct Authenticator {
    enabled: bool,
    keys: Vec<Key>,
    anonymous: Option<RateLimiter>,
}

impl Authenticator {
    pub fn new(cfg: &AuthConfig) -> Result<Self, AuthConfigError> {
        cfg.validate()?;
        let keys = cfg
            .keys
            .iter()
            .map(|k| {
                let hash = parse_hash(&k.sha256)
                    .ok_or_else(|| AuthConfigError::BadHash(k.name.clone()))?;
                Ok(Key {
                    name: k.name.clone(),
                    roles: k.roles.clone(),
                    hash,
                })
            })
            .collect::<Result<_, AuthConfigError>>()?;
        Ok(Authenticator {
            enabled: cfg.enabled,
            keys,
            anonymous: cfg.anonymous.as_ref().map(RateLimiter::new),
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn decide(&self, path: &str, authorization: Option<&[u8]>) -> Decision {
        let Some(needs) = role_for_path(path) else {
            return Decision::Open;
        };
        if !self.enabled {
            return Decision::Open;
        }
        let Some(header) = authorization else {
            if self.anonymous.is_some() && anonymous_may_call(path) {
                return Decision::Anonymous;
            }
            return Decision::Unauthenticated("missing authorization metadata");
        };
        let Some(token) = bearer_token(header) else {
            return Decision::Unauthenticated("authorization must be `Bearer <api key>`");
        };
        let presented: [u8; 32] = Sha256::digest(token).into();
        let mut found: Option<&Key> = None;
        for k in &self.keys {
            // Every key is compared; the match is remembered without branching out early.
            if bool::from(k.hash.ct_eq(&presented)) && found.is_none() {
                found = Some(k);
            }
        }
        match found {
            None => Decision::Unauthenticated("invalid api key"),
            Some(k) if k.roles.contains(&needs) => Decision::Allowed {
                key_name: k.name.clone(),
            },
            Some(k) => Decision::PermissionDenied {
                key_name: k.name.clone(),
                needs,
            },
        }
    }
}

/// Method path → role, from the tables the services declare (`services::ROLES`).
static ROLE_TABLE: LazyLock<HashMap<&'static str, Role>> = LazyLock::new(|| {
    super::services::ROLES
        .iter()
        .flat_map(|table| table.iter().copied())
        .collect()
});

/// Which role a gRPC path needs; `None` for paths every client may call (health checks,
/// reflection). A path no service lists needs admin: a new RPC is closed until it declares
/// its role. Admission control groups requests by the same classes.
pub fn role_for_path(path: &str) -> Option<Role> {
    if path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.")
        || super::web::is_public(path)
    {
        return None;
    }
    if super::web::is_image(path) {
        return Some(Role::Search);
    }
    Some(ROLE_TABLE.get(path).copied().unwrap_or(Role::Admin))
}

fn anonymous_may_call(path: &str) -> bool {
    ANONYMOUS_PATHS.contains(&path) || super::web::is_image(path)
}

/// Token buckets per client address for the anonymous role.
struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: parking_lot::Mutex<HashMap<std::net::IpAddr, (f64, std::time::Instant)>>,
}

/// Addresses remembered at most; past it, buckets that have refilled are forgotten (a full
/// bucket is the same as none).
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    fn new(cfg: &AnonymousConfig) -> RateLimiter {
        RateLimiter {
            per_second: cfg.requests_per_second,
            burst: f64::from(cfg.burst),
            buckets: Default::default(),
        }
    }

    fn allow(&self, ip: std::net::IpAddr, now: std::time::Instant) -> bool {
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&ip) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= MAX_BUCKETS {
                return false;
            }
        }
        let (tokens, at) = buckets.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_second)
            .min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The client's address as tonic's transport recorded it (plain TCP or TLS).
fn peer_ip<B>(req: &http::Request<B>) -> Option<std::net::IpAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|t| t.get_ref().remote_addr())
        })
        .map(|a| a.ip())
}

fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let rest = header
        .strip_prefix(b"Bearer ")
        .or_else(|| header.strip_prefix(b"bearer "))?;
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Tower layer in front of every service.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>) -> Self {
        AuthLayer { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for AuthService<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>,
    S::Future: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = http::Response<ResB>;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        futures::future::Ready<Result<http::Response<ResB>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        use futures::future::{ready, Either};
        let path = req.uri().path();
        let image = super::web::is_image(path);
        let decision = self.auth.decide(
            path,
            req.headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
        );
        let status = match decision {
            Decision::Open => None,
            Decision::Anonymous => {
                let ip =
                    peer_ip(&req).unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
                let allowed = self
                    .auth
                    .anonymous
                    .as_ref()
                    .is_some_and(|l| l.allow(ip, std::time::Instant::now()));
                (!allowed).then(|| {
                    tonic::Status::resource_exhausted(
                        "anonymous rate limit reached; slow down or use an api key",
                    )
                })
            }
            Decision::Allowed { key_name } => {
                tracing::debug!(key = %key_name, rpc = %path, "authorized");
                None
            }
            Decision::Unauthenticated(why) => Some(tonic::Status::unauthenticated(why)),
            Decision::PermissionDenied { key_name, needs } => {
                tracing::warn!(key = %key_name, rpc = %path, "permission denied");
                Some(tonic::Status::permission_denied(format!(
                    "api key {key_name:?} lacks the {needs} role"
                )))
            }
        };
        match status {
            None => Either::Left(self.inner.call(req)),
            // A thumbnail is fetched by a browser, which reads HTTP statuses, not grpc-status.
            Some(status) if image => {
                let code = match status.code() {
                    tonic::Code::Unauthenticated => http::StatusCode::UNAUTHORIZED,
                    tonic::Code::ResourceExhausted => http::StatusCode::TOO_MANY_REQUESTS,
                    _ => http::StatusCode::FORBIDDEN,
                };
                let mut resp = http::Response::new(ResB::default());
                *resp.status_mut() = code;
                Either::Right(ready(Ok(resp)))
            }
            Some(status) => Either::Right(ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        let cfg = AuthConfig {
            anonymous: None,
            enabled: true,
            keys: vec![
                ApiKeyConfig {
                    name: "front".into(),
                    roles: vec![Role::Search],
                    sha256: hash_key("k-search"),
                },
                ApiKeyConfig {
                    name: "ops".into(),
                    roles: vec![Role::Admin, Role::Ingest],
                    sha256: hash_key("k-ops"),
                },
            ],
        };
        Authenticator::new(&cfg).unwrap()
    }

    #[test]
    fn roles_reach_only_their_services() {
        let a = auth();
        let search = "/mmsearch.v1.SearchService/Search";
        let upsert = "/mmsearch.v1.IngestService/Upsert";
        let rebuild = "/mmsearch.v1.AdminService/Rebuild";
        assert!(matches!(
            a.decide(search, Some(b"Bearer k-search")),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            a.decide(upsert, Some(b"Bearer k-search")),
            Decision::PermissionDenied { .. }
        ));
        assert!(matches!(
            a.decide(rebuild, Some(b"Bearer k-search")),
            Decision::PermissionDenied { .. }
        ));
        assert!(matches!(
            a.decide(upsert, Some(b"Bearer k-ops")),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            a.decide(search, Some(b"Bearer k-ops")),
            Decision::PermissionDenied { .. }
        ));
        assert!(matches!(
            a.decide("/other.Service/X", Some(b"Bearer k-ops")),
            Decision::Allowed { .. }
        ));
        // Get is listed under ingest, not search.
        assert!(matches!(
            a.decide("/mmsearch.v1.IngestService/Get", Some(b"Bearer k-search")),
            Decision::PermissionDenied { .. }
        ));
    }

    #[test]
    fn unlisted_paths_need_admin() {
        let a = auth();
        // An RPC no table lists, even under a service whose other RPCs a key may call.
        for path in [
            "/mmsearch.v1.SearchService/Unlisted",
            "/mmsearch.v1.IngestService/Unlisted",
            "/other.Service/X",
            "/unknown",
        ] {
            assert_eq!(role_for_path(path), Some(Role::Admin), "{path}");
            assert_eq!(
                a.decide(path, Some(b"Bearer k-search")),
                Decision::PermissionDenied {
                    key_name: "front".into(),
                    needs: Role::Admin
                },
                "{path}"
            );
        }
        assert_eq!(role_for_path("/grpc.health.v1.Health/Watch"), None);
    }

    /// Every RPC of every mmsearch service has exactly one role entry, and every entry names an
    /// RPC that exists: adding an RPC without deciding who may call it fails here.
    #[test]
    fn every_rpc_has_exactly_one_role() {
        use prost::Message;
        let fds = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let mut methods = Vec::new();
        for file in fds
            .file
            .iter()
            .filter(|f| f.package().starts_with("mmsearch."))
        {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    methods.push(format!("/{package}.{}/{}", service.name(), method.name()));
                }
            }
        }
        assert!(
            methods.len() >= 7,
            "the descriptor set lists the mmsearch services: {methods:?}"
        );
        let entries: Vec<&str> = super::super::services::ROLES
            .iter()
            .flat_map(|t| t.iter().map(|(path, _)| *path))
            .collect();
        for m in &methods {
            let n = entries.iter().filter(|e| *e == m).count();
            assert_eq!(
                n, 1,
                "{m} has {n} role entries; declare exactly one in its service's ROLES"
            );
        }
        for e in &entries {
            assert!(
                methods.iter().any(|m| m == e),
                "role entry {e} names no RPC in the proto"
            );
        }
    }

    #[test]
    fn missing_malformed_and_wrong_keys_are_unauthenticated() {
        let a = auth();
        let p = "/mmsearch.v1.SearchService/Search";
        assert!(matches!(a.decide(p, None), Decision::Unauthenticated(_)));
        assert!(matches!(
            a.decide(p, Some(b"k-search")),
            Decision::Unauthenticated(_)
        ));
        assert!(matches!(
            a.decide(p, Some(b"Bearer ")),
            Decision::Unauthenticated(_)
        ));
        assert!(matches!(
            a.decide(p, Some(b"Bearer k-searcH")),
            Decision::Unauthenticated(_)
        ));
        assert!(matches!(
            a.decide(p, Some(b"Basic azpr")),
            Decision::Unauthenticated(_)
        ));
    }

    #[test]
    fn health_and_reflection_stay_open() {
        let a = auth();
        assert_eq!(
            a.decide("/grpc.health.v1.Health/Check", None),
            Decision::Open
        );
        assert_eq!(
            a.decide(
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                None
            ),
            Decision::Open
        );
    }

    #[test]
    fn enabled_without_keys_is_a_config_error_and_disabled_is_open() {
        assert_eq!(
            AuthConfig::default().validate(),
            Err(AuthConfigError::NoKeys)
        );
        let off = Authenticator::new(&AuthConfig {
            anonymous: None,
            enabled: false,
            keys: vec![],
        })
        .unwrap();
        assert_eq!(
            off.decide("/mmsearch.v1.AdminService/Rebuild", None),
            Decision::Open
        );
        let bad = AuthConfig {
            anonymous: None,
            enabled: true,
            keys: vec![ApiKeyConfig {
                name: "x".into(),
                roles: vec![Role::Search],
                sha256: "abc".into(),
            }],
        };
        assert!(matches!(bad.validate(), Err(AuthConfigError::BadHash(_))));
    }

    #[test]
    fn anonymous_role_searches_and_records_clicks_only_within_its_rate() {
        let cfg = AuthConfig {
            anonymous: Some(AnonymousConfig {
                requests_per_second: 1.0,
                burst: 2,
            }),
            ..AuthConfig::default()
        };
        let a = Authenticator::new(&cfg).unwrap();
        assert_eq!(
            a.decide("/mmsearch.v1.SearchService/Search", None),
            Decision::Anonymous
        );
        assert_eq!(a.decide("/images/tripod", None), Decision::Anonymous);
        for path in [
            "/mmsearch.v1.AdminService/Rebuild",
            "/mmsearch.v1.IngestService/Upsert",
            "/mmsearch.v1.AdminService/ExportUserData",
        ] {
            assert!(
                matches!(a.decide(path, None), Decision::Unauthenticated(_)),
                "{path}"
            );
        }
        // A wrong key is not anonymous.
        assert!(matches!(
            a.decide("/mmsearch.v1.SearchService/Search", Some(b"Bearer nope")),
            Decision::Unauthenticated(_)
        ));
        assert_eq!(a.decide("/admin", None), Decision::Open);
        let limiter = a.anonymous.as_ref().unwrap();
        let ip: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let other: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = std::time::Instant::now();
        assert!(limiter.allow(ip, t0) && limiter.allow(ip, t0));
        assert!(!limiter.allow(ip, t0), "burst spent");
        assert!(limiter.allow(other, t0), "buckets are per address");
        assert!(limiter.allow(ip, t0 + std::time::Duration::from_millis(1100)));
        assert!(AuthConfig {
            anonymous: Some(AnonymousConfig {
                requests_per_second: 0.0,
                burst: 1
            }),
            ..AuthConfig::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn generated_keys_are_unique_and_hash_to_64_hex() {
        let (k1, k2) = (generate_key(), generate_key());
        assert_ne!(k1, k2);
        assert_eq!(hash_key(&k1).len(), 64);
    }
}
