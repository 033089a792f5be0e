//! `mmsearch restore`: verify a snapshot and bring a data directory back from it.

use super::RestoreArgs;
use crate::collection::snapshot;
use crate::config::Config;

pub fn run(args: RestoreArgs) -> anyhow::Result<()> {
    let specs = match &args.config {
        Some(path) => {
            let config = Config::load(Some(path))?;
            // Only the spaces matter to a restore; keys, TLS and limits are the server's business.
            config.validate_spaces()?;
            Some(config.engine().collection().spaces)
        }
        None => None,
    };
    let report = snapshot::restore(&args.snapshot, &args.data_dir, args.force, specs.as_deref())?;
    let m = &report.manifest;
    println!(
        "restored {} into {}: version {}  generation {} (covers version {})  {} files, {} bytes  {:.2}s",
        args.snapshot.display(),
        args.data_dir.display(),
        m.last_seq,
        m.generation,
        m.generation_snapshot_seq,
        m.files.len(),
        report.bytes,
        report.seconds
    );
    let spaces: Vec<String> = m
        .spaces
        .iter()
        .map(|s| format!("{} ({}-d {})", s.name, s.dim, s.metric.as_str()))
        .collect();
    println!("spaces: {}", spaces.join(", "));
    if m.models.is_empty() {
        println!("the snapshot was taken without models");
    } else {
        let models: Vec<String> = m
            .models
            .iter()
            .map(|x| format!("{} ({})", x.id, x.kind))
            .collect();
        println!("serve it with the same models: {}", models.join(", "));
    }
    Ok(())
}
