//! Client side of the API, shared by the CLI and the load/soak tools: one connection helper
//! that speaks TLS when asked and sends the API key with every call.

use pb::admin_service_client::AdminServiceClient;
use pb::ingest_service_client::IngestServiceClient;
use pb::recommend_service_client::RecommendServiceClient;
use pb::search_service_client::SearchServiceClient;
use std::path::PathBuf;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::pb;

/// Largest message the client tools send or accept (catalogue items with photos).
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientOptions {
    /// Server address (`https://…` for TLS).
    #[arg(
        long,
        short = 's',
        env = "MMSEARCH_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    pub server: String,
    /// API key, sent as `authorization: Bearer <key>`.
    #[arg(long, env = "MMSEARCH_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
    /// PEM CA certificate that signed the server's certificate (TLS).
    #[arg(long, env = "MMSEARCH_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients (mutual TLS).
    #[arg(
        long,
        env = "MMSEARCH_CLIENT_CERT",
        global = true,
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    #[arg(
        long,
        env = "MMSEARCH_CLIENT_KEY",
        global = true,
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// Name to verify the server certificate against (default: the host in --server).
    #[arg(long, env = "MMSEARCH_TLS_DOMAIN", global = true)]
    pub tls_domain: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server address {0:?}: {1}")]
    Address(String, String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the API key is not valid header text")]
    BadKey,
    #[error("connecting to {0}: {1}")]
    Connect(String, tonic::transport::Error),
}

/// Adds the bearer key to every request.
#[derive(Clone)]
pub struct BearerAuth(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type AuthChannel = InterceptedService<Channel, BearerAuth>;

/// A connected channel plus the credentials to use on it.
#[derive(Clone)]
pub struct Connection {
    channel: Channel,
    auth: BearerAuth,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::Read {
        path: path.clone(),
        source,
    })
}

impl ClientOptions {
    pub fn endpoint(&self) -> Result<Endpoint, ClientError> {
        let mut ep = Endpoint::from_shared(self.server.clone())
            .map_err(|e| ClientError::Address(self.server.clone(), e.to_string()))?;
        if self.server.starts_with("https://") || self.ca_cert.is_some() {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &self.ca_cert {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(c), Some(k)) = (&self.client_cert, &self.client_key) {
                tls = tls.identity(Identity::from_pem(read(c)?, read(k)?));
            }
            if let Some(d) = &self.tls_domain {
                tls = tls.domain_name(d.clone());
            }
            ep = ep
                .tls_config(tls)
                .map_err(|e| ClientError::Address(self.server.clone(), e.to_string()))?;
        }
        Ok(ep)
    }

    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let channel = self
            .endpoint()?
            .connect()
            .await
            .map_err(|e| ClientError::Connect(self.server.clone(), e))?;
        let auth = match &self.api_key {
            Some(k) => Some(
                format!("Bearer {k}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| ClientError::BadKey)?,
            ),
            None => None,
        };
        Ok(Connection {
            channel,
            auth: BearerAuth(auth),
        })
    }
}

impl Connection {
    /// The raw channel with the key attached, for clients built by hand.
    pub fn channel(&self) -> AuthChannel {
        InterceptedService::new(self.channel.clone(), self.auth.clone())
    }

    pub fn search(&self) -> SearchServiceClient<AuthChannel> {
        SearchServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_encoding_message_size(MAX_MESSAGE)
            .max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn ingest(&self) -> IngestServiceClient<AuthChannel> {
        IngestServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_encoding_message_size(MAX_MESSAGE)
            .max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn recommend(&self) -> RecommendServiceClient<AuthChannel> {
        RecommendServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_encoding_message_size(MAX_MESSAGE)
            .max_decoding_message_size(MAX_MESSAGE)
    }

    pub fn admin(&self) -> AdminServiceClient<AuthChannel> {
        AdminServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_encoding_message_size(MAX_MESSAGE)
            .max_decoding_message_size(MAX_MESSAGE)
    }
}
