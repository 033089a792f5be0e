//! The gRPC server: four services (search, ingest, admin, recommend), health and reflection, on one port,
//! behind the request layers (observe, oversize, auth, admission). Handlers convert, call the
//! engine, and map errors in one place (`status.rs`).

pub mod admission;
pub mod auth;
pub mod convert;
mod layers;
mod observe;
mod recommend;
pub mod runtime;
mod services;
pub mod status;
pub mod tls;
pub mod web;

use crate::engine::Engine;
use crate::pb;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The server's own settings: network, access, limits of the transport. (The engine's are in
/// `crate::engine::EngineConfig`.)
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    /// API keys and roles; on unless disabled explicitly.
    pub auth: auth::AuthConfig,
    /// TLS on the gRPC port; plaintext when absent.
    pub tls: Option<tls::TlsConfig>,
    /// Address of the operations HTTP port (`/metrics`, `/healthz`, `/readyz`); empty = off.
    pub metrics_listen: String,
    /// After SIGTERM, how long in-flight requests may take before the server exits anyway.
    pub shutdown_grace_ms: u64,
    pub limits: ServerLimits,
    /// Threads of the tokio runtime (`[runtime]`).
    pub runtime: runtime::RuntimeConfig,
    /// The web pages and browsers' access (`[web]`).
    pub web: web::WebConfig,
}

/// The transport's share of `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerLimits {
    /// Largest gRPC message accepted (bytes); larger ones get RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// Server-side cap on any request's deadline (ms); a client's shorter grpc-timeout wins.
    pub request_timeout_ms: u64,
    /// Requests in flight and queued per service (search, ingest, admin).
    pub concurrency: admission::ConcurrencyConfig,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_message_bytes: 32 * 1024 * 1024,
            request_timeout_ms: 30_000,
            concurrency: Default::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:50051".into(),
            auth: Default::default(),
            tls: None,
            metrics_listen: String::new(),
            shutdown_grace_ms: 30_000,
            limits: ServerLimits::default(),
            runtime: Default::default(),
            web: Default::default(),
        }
    }
}

impl ServerConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.auth.validate().map_err(|e| e.to_string())?;
        self.web.validate()?;
        self.limits.concurrency.validate()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    Auth(#[from] auth::AuthConfigError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Serves `engine` until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    config: &ServerConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let limits = &config.limits;
    let deadline_cap = Duration::from_millis(limits.request_timeout_ms);
    let max = limits.max_message_bytes;

    let search = pb::search_service_server::SearchServiceServer::new(services::SearchApi {
        engine: engine.clone(),
        deadline_cap,
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let ingest = pb::ingest_service_server::IngestServiceServer::new(services::IngestApi {
        engine: engine.clone(),
        deadline_cap,
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let recommend =
        pb::recommend_service_server::RecommendServiceServer::new(recommend::RecommendApi {
            engine: engine.clone(),
            deadline_cap,
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let web_pages = config.web.enabled.then(|| web::router(engine.clone()));
    let admin = pb::admin_service_server::AdminServiceServer::new(services::AdminApi { engine })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::search_service_server::SearchServiceServer<services::SearchApi>>()
        .await;
    health_reporter
        .set_serving::<pb::ingest_service_server::IngestServiceServer<services::IngestApi>>()
        .await;
    health_reporter
        .set_serving::<pb::admin_service_server::AdminServiceServer<services::AdminApi>>()
        .await;
    health_reporter.set_serving::<pb::recommend_service_server::RecommendServiceServer<recommend::RecommendApi>>().await;

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // Small gRPC responses must not wait for Nagle + delayed ACK (a ~40 ms stall per call).
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |conn| {
            conn.inspect(|stream| {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::warn!(error = %e, "could not set TCP_NODELAY");
                }
            })
        },
    );
    let authenticator = Arc::new(auth::Authenticator::new(&config.auth)?);
    let admission = admission::Admission::new(&limits.concurrency);
    // Browsers speak HTTP/1.1 (gRPC-web, the pages); gRPC clients keep HTTP/2.
    let mut builder = tonic::transport::Server::builder().accept_http1(true);
    if let Some(tls) = &config.tls {
        builder = builder.tls_config(tls.server_config()?)?;
    }
    let routes = tonic::service::Routes::new(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(search)
        .add_service(ingest)
        .add_service(admin)
        .add_service(recommend);
    let routes = match web_pages {
        Some(pages) => tonic::service::Routes::from(routes.into_axum_router().merge(pages)),
        None => routes,
    };
    // Outermost first: CORS answers preflights; gRPC-web is translated to gRPC before observe,
    // so every layer below sees plain gRPC; observe sees every answer, including auth and
    // admission refusals.
    builder
        .layer(web::cors(&config.web))
        .layer(web::PagesOrGrpcWebLayer)
        .layer(observe::ObserveLayer)
        .layer(layers::OversizeAsExhaustedLayer)
        .layer(auth::AuthLayer::new(authenticator))
        .layer(admission::AdmissionLayer::new(admission))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
