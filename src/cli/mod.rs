//! The `mmsearch` command line: `serve`, plus client commands that talk to a server.

pub mod catalog;
mod client;
mod recommend;
mod reembed;
mod restore;
mod serve;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "mmsearch", version, about = "Multimodal product search server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Stream a catalogue file (JSON lines) to a server.
    Ingest(IngestArgs),
    /// Query a server.
    Search(SearchArgs),
    /// Admin operations.
    Admin(AdminArgs),
    /// Stream shopper interactions (JSON lines) to a server.
    Events(recommend::EventsArgs),
    /// Recommendations: for a user (--user), or like / unlike items (--like, --dislike).
    Recommend(recommend::RecommendArgs),
    /// Make a new API key: prints the key (give it to the client) and the config entry
    /// holding only its hash (give that to the server).
    Keygen(KeygenArgs),
    /// Bring a data directory back from a snapshot (`mmsearch admin snapshot`); run it while
    /// no server uses the data directory.
    Restore(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot directory (what `mmsearch admin snapshot` wrote, under the server's
    /// snapshot_dir; it prints the path).
    pub snapshot: PathBuf,
    /// Data directory to restore into; must be missing or empty unless --force.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Replace the store and index of a non-empty data directory.
    #[arg(long)]
    pub force: bool,
    /// Server config to check the snapshot's vector spaces against.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Who will hold the key (shown in logs).
    #[arg(long)]
    pub name: String,
    /// Roles: search, ingest, admin (repeatable).
    #[arg(long = "role", required = true, value_parser = parse_role)]
    pub roles: Vec<crate::server::auth::Role>,
}

fn parse_role(s: &str) -> Result<crate::server::auth::Role, String> {
    use crate::server::auth::Role;
    match s {
        "search" => Ok(Role::Search),
        "ingest" => Ok(Role::Ingest),
        "admin" => Ok(Role::Admin),
        other => Err(format!(
            "unknown role {other:?}: use search, ingest or admin"
        )),
    }
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML config file (defaults apply to anything it leaves out).
    #[arg(long, env = "MMSEARCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (store + index generations); overrides the config.
    #[arg(long, env = "MMSEARCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory for snapshots (outside the data directory); overrides the config.
    #[arg(long, env = "MMSEARCH_SNAPSHOT_DIR")]
    pub snapshot_dir: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:50051 or 127.0.0.1:0; overrides the config.
    #[arg(long, env = "MMSEARCH_LISTEN")]
    pub listen: Option<String>,
    /// Directory with the model folders (models/setup.sh output); overrides the config.
    #[arg(long, env = "MMSEARCH_MODELS")]
    pub models: Option<PathBuf>,
    /// Serve vector and item queries only, without loading models.
    #[arg(long, env = "MMSEARCH_NO_MODELS")]
    pub no_models: bool,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "MMSEARCH_LOG_JSON")]
    pub log_json: bool,
    /// Serve without API keys: anyone who reaches the port may search, ingest and rebuild.
    /// For local demos and tests only.
    #[arg(long, env = "MMSEARCH_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Operations HTTP port for /metrics, /healthz, /readyz (e.g. 0.0.0.0:9464); overrides the config.
    #[arg(long, env = "MMSEARCH_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// PEM certificate chain for TLS on the gRPC port (with --tls-key); overrides the config.
    #[arg(long, env = "MMSEARCH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "MMSEARCH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: require client certificates signed by it.
    #[arg(long, env = "MMSEARCH_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

/// Connection options of the client commands (server, API key, TLS).
pub use crate::client::ClientOptions as ServerAddr;

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Catalogue file, one JSON object per line.
    pub catalog: PathBuf,
    /// Items per Upsert stream; each stream's summary acknowledges its items.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    #[command(flatten)]
    pub addr: ServerAddr,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    #[arg(long, group = "query")]
    pub text: Option<String>,
    /// Path of a photo (JPEG, PNG, WebP, GIF, BMP).
    #[arg(long, group = "query")]
    pub image: Option<PathBuf>,
    /// Path of a WAV recording.
    #[arg(long, group = "query")]
    pub voice: Option<PathBuf>,
    /// With --voice: the spoken language as a Whisper code (zh, en, …) instead of detecting it
    /// (needs a multilingual speech model for anything but en).
    #[arg(long, requires = "voice")]
    pub language: Option<String>,
    /// Path of a video (MP4, WebM, MOV, …): its keyframes and soundtrack are the query.
    #[arg(long, group = "query")]
    pub video: Option<PathBuf>,
    /// Items like this item id.
    #[arg(long, group = "query")]
    pub item: Option<String>,
    /// Comma-separated vector values (use with --space).
    #[arg(long, group = "query", allow_hyphen_values = true)]
    pub vector: Option<String>,
    /// Space for --vector and --item (default: the server's text-role space).
    #[arg(long, default_value = "")]
    pub space: String,
    /// Show why each hit scored what it did (per-space scores, weights, ranks, plan).
    #[arg(long)]
    pub explain: bool,
    /// Personalise for this user: re-rank the query's top candidates by their interests.
    #[arg(long)]
    pub user: Option<String>,
    /// Weight of the user's interests in a personalised ranking (0..1).
    #[arg(long, default_value_t = 0.3)]
    pub personalization: f32,
    /// vector, lexical or hybrid (default: hybrid for --text and --voice, vector otherwise).
    #[arg(long, value_parser = ["vector", "lexical", "hybrid"])]
    pub mode: Option<String>,
    /// Fusion of a hybrid query: rrf or convex (default: the server's).
    #[arg(long, value_parser = ["rrf", "convex"])]
    pub fusion: Option<String>,
    /// Weight of the lexical list in a hybrid query, 0..1 (default: the server's).
    #[arg(long)]
    pub lexical_weight: Option<f32>,
    /// Without a query: browse the filtered items sorted by newest, price-asc or price-desc.
    #[arg(long, value_parser = ["newest", "price-asc", "price-desc"])]
    pub sort: Option<String>,
    #[arg(long, short = 'k', default_value_t = 10)]
    pub top_k: u32,
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
    #[arg(long)]
    pub category: Vec<String>,
    #[arg(long)]
    pub price_min: Option<f64>,
    #[arg(long)]
    pub price_max: Option<f64>,
    /// Attribute filter, key=value (repeatable).
    #[arg(long = "attr")]
    pub attributes: Vec<String>,
    /// Print the raw response as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub addr: ServerAddr,
}

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
    #[command(flatten)]
    pub addr: ServerAddr,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Build a new index generation and swap it in, showing progress.
    Rebuild,
    /// Show items, generations, layers and models.
    Status,
    /// Write a consistent snapshot (store checkpoint + index generation + manifest) into the
    /// server's snapshot directory (its `snapshot_dir`); prints where it went.
    Snapshot {
        /// Name of the snapshot: 1-128 of [A-Za-z0-9._-], not starting with '.'. Default:
        /// snapshot-<UTC time>-v<last version>.
        name: Option<String>,
    },
    /// Re-encode every stored item with the configured models (after changing `encode.set`),
    /// then rebuild the index. Runs offline on the data directory, in place of the server, which
    /// refuses to start on vectors that other models made. Photos are re-read from the items'
    /// image URIs (local paths).
    Reembed {
        /// Server config (TOML): data directory, spaces and the models to encode with.
        #[arg(long, env = "MMSEARCH_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory; overrides the config.
        #[arg(long, env = "MMSEARCH_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Directory with the model folders; overrides the config.
        #[arg(long, env = "MMSEARCH_MODELS")]
        models: Option<PathBuf>,
    },
    /// Train the recommendation model from the stored interactions, showing progress.
    Train,
    /// Erase a user's interactions (right to erasure).
    DeleteUser { user: String },
    /// Print a user's interactions as JSON lines.
    ExportUser { user: String },
}

/// Runs one command; builds the tokio runtime it needs (the server's from its config).
pub fn main(cli: Cli) -> anyhow::Result<()> {
    let client_runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match cli.command {
        Command::Serve(a) => serve::main(a),
        Command::Ingest(a) => client_runtime()?.block_on(client::ingest(a)),
        Command::Search(a) => client_runtime()?.block_on(client::search(a)),
        Command::Admin(AdminArgs {
            command:
                AdminCommand::Reembed {
                    config,
                    data_dir,
                    models,
                },
            ..
        }) => client_runtime()?.block_on(reembed::run(config, data_dir, models)),
        Command::Admin(a) => client_runtime()?.block_on(client::admin(a)),
        Command::Events(a) => client_runtime()?.block_on(recommend::events(a)),
        Command::Recommend(a) => client_runtime()?.block_on(recommend::recommend(a)),
        Command::Keygen(a) => {
            keygen(a);
            Ok(())
        }
        Command::Restore(a) => restore::run(a),
    }
}

fn keygen(args: KeygenArgs) {
    let key = crate::server::auth::generate_key();
    // Debug of the role name gives the quoted TOML string.
    let roles: Vec<String> = args
        .roles
        .iter()
        .map(|r| format!("{:?}", r.to_string()))
        .collect();
    println!(
        "# API key for {} (give this to the client; it is not stored anywhere):",
        args.name
    );
    println!("# {key}");
    println!("# Server config entry:");
    println!("[[auth.keys]]");
    println!("name = {:?}", args.name);
    println!("roles = [{}]", roles.join(", "));
    println!("sha256 = {:?}", crate::server::auth::hash_key(&key));
}
