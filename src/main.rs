use clap::Parser;

// No #[tokio::main]: `serve` sizes its runtime from the config file (`[runtime]`), so the CLI
// builds the runtime after reading it.
fn main() {
    let cli = mmsearch::cli::Cli::parse();
    if let Err(e) = mmsearch::cli::main(cli) {
        eprintln!("mmsearch: {e:#}");
        std::process::exit(1);
    }
}
