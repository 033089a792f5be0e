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
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: true,
            keys: Vec::new(),
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
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.keys.is_empty() {
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
    Unauthenticated(&'static str),
    PermissionDenied {
        key_name: String,
        needs: Role,
    },
}

pub struct Authenticator {
    enabled: bool,
    keys: Vec<Key>,
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
    if path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.") {
        return None;
    }
    Some(ROLE_TABLE.get(path).copied().unwrap_or(Role::Admin))
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
        let decision = self.auth.decide(
            path,
            req.headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
        );
        let status = match decision {
            Decision::Open => None,
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
            Some(status) => Either::Right(ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        let cfg = AuthConfig {
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
            "/",
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
            enabled: false,
            keys: vec![],
        })
        .unwrap();
        assert_eq!(
            off.decide("/mmsearch.v1.AdminService/Rebuild", None),
            Decision::Open
        );
        let bad = AuthConfig {
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
    fn generated_keys_are_unique_and_hash_to_64_hex() {
        let (k1, k2) = (generate_key(), generate_key());
        assert_ne!(k1, k2);
        assert_eq!(hash_key(&k1).len(), 64);
    }
}
