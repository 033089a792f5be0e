//! The gRPC API: three services (search, ingest, admin), health and reflection, on one port.

pub mod admission;
pub mod auth;
pub mod client;
pub mod convert;
mod layers;
mod observe;
mod services;
pub mod status;
pub mod tls;

pub mod pb {
    tonic::include_proto!("mmsearch.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mmsearch_descriptor");
}

use crate::collection::Collection;
use crate::encode::Encoders;
use crate::ingest::Ingester;
use crate::search::Searcher;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

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

/// Serves until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    listener: TcpListener,
    collection: Arc<Collection>,
    encoders: Option<Arc<Encoders>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let config = collection.config().clone();
    let limits = &config.limits;
    let deadline_cap = Duration::from_millis(limits.request_timeout_ms);
    let max = limits.max_message_bytes;

    let searcher = Arc::new(Searcher::new(collection.clone(), encoders.clone()));
    let ingester = Arc::new(Ingester::new(collection.clone(), encoders.clone(), &config.ingest.batch));

    let search = pb::search_service_server::SearchServiceServer::new(services::SearchApi { searcher, deadline_cap })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let ingest = pb::ingest_service_server::IngestServiceServer::new(services::IngestApi {
        collection: collection.clone(),
        ingester,
        group_commit_max: config.ingest.group_commit_max,
        deadline_cap,
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let admin = pb::admin_service_server::AdminServiceServer::new(services::AdminApi { collection: collection.clone(), encoders })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<pb::search_service_server::SearchServiceServer<services::SearchApi>>().await;
    health_reporter.set_serving::<pb::ingest_service_server::IngestServiceServer<services::IngestApi>>().await;
    health_reporter.set_serving::<pb::admin_service_server::AdminServiceServer<services::AdminApi>>().await;

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    // Small gRPC responses must not wait for Nagle + delayed ACK (a ~40 ms stall per call).
    let incoming = tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(listener), |conn| {
        conn.inspect(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::warn!(error = %e, "could not set TCP_NODELAY");
            }
        })
    });
    let authenticator = Arc::new(auth::Authenticator::new(&config.auth)?);
    let admission = admission::Admission::new(&limits.concurrency);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder.tls_config(tls.server_config()?)?;
    }
    // Outermost first: observe sees every answer, including auth and admission refusals.
    builder
        .layer(observe::ObserveLayer)
        .layer(layers::OversizeAsExhaustedLayer)
        .layer(auth::AuthLayer::new(authenticator))
        .layer(admission::AdmissionLayer::new(admission))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(search)
        .add_service(ingest)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
