//! A bearer-authenticated channel from an address and key, for the load, soak and scale clients.
//! The connection logic itself (TLS, API key) lives in `mmsearch::client`.

pub use mmsearch::client::AuthChannel;
use mmsearch::client::ClientOptions;

/// A channel to `addr` whose calls carry `key`, if given.
pub async fn auth_channel(addr: &str, key: Option<&str>) -> anyhow::Result<AuthChannel> {
    let opts = ClientOptions {
        server: addr.to_string(),
        api_key: key.map(String::from),
        ..Default::default()
    };
    Ok(opts.connect().await?.channel())
}
