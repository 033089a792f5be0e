//! Connecting to a server, shared by the `mmsearch` client commands and the load/soak tools:
//! one channel, an optional API key sent as `authorization: Bearer <key>` on every call, and the
//! percentile helper the tools report with.

use anyhow::Context;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub async fn channel(addr: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(addr.to_string())?.connect().await.with_context(|| format!("connecting to {addr}"))
}

/// Adds the bearer key, when there is one, to every request on a channel.
#[derive(Clone, Default)]
pub struct BearerAuth(Option<MetadataValue<Ascii>>);

impl BearerAuth {
    pub fn new(key: Option<&str>) -> anyhow::Result<BearerAuth> {
        let value = key
            .map(|k| format!("Bearer {k}").parse::<MetadataValue<Ascii>>().context("API key is not valid header text"))
            .transpose()?;
        Ok(BearerAuth(value))
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

pub type AuthChannel = InterceptedService<Channel, BearerAuth>;

/// A channel to `addr` whose calls carry `key`, if given.
pub async fn auth_channel(addr: &str, key: Option<&str>) -> anyhow::Result<AuthChannel> {
    Ok(InterceptedService::new(channel(addr).await?, BearerAuth::new(key)?))
}

/// The `p`-quantile (0..=1) of an ascending slice, nearest rank; 0 for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
}
