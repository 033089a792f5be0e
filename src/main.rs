use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = mmsearch::cli::Cli::parse();
    if let Err(e) = mmsearch::cli::run(cli).await {
        eprintln!("mmsearch: {e:#}");
        std::process::exit(1);
    }
}
