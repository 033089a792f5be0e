//! `mmsearch admin reembed`: re-encode a data directory's catalogue with the configured models
//! after switching model sets, then rebuild its index. Offline (the server refuses to start on a
//! data directory whose vectors other models made, so this runs in its place), progress on stdout.

use crate::collection::RebuildPhase;
use crate::config::Config;
use crate::engine::Engine;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

pub async fn run(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    models: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut config = Config::load(config.as_deref())?;
    if let Some(d) = data_dir {
        config.data_dir = d;
    }
    if let Some(m) = models {
        config.encode.model_dir = m;
    }
    let mut engine_config = config.engine();
    engine_config.no_models = false;
    engine_config.allow_model_change = true;
    engine_config.validate()?;
    let started = Instant::now();
    let engine = Engine::start(engine_config).await?;
    let loaded = engine
        .encoders()
        .map(|e| e.vector_models())
        .unwrap_or_default();
    let stored = engine
        .collection()
        .vector_models()?
        .unwrap_or_else(|| "not recorded".into());
    println!(
        "re-encoding {} with [{loaded}] (its vectors were made by [{stored}])",
        config.data_dir.display()
    );
    let report = engine
        .reembed(|done, total| {
            print!("\rreembed: {done}/{total} items");
            let _ = std::io::stdout().flush();
        })
        .await?;
    println!();
    if !report.without_photos.is_empty() {
        println!(
            "{} items have image URIs that are not readable files here; they were encoded from their text only: {}",
            report.without_photos.len(),
            report.without_photos.join(", ")
        );
    }
    if !report.rejected.is_empty() {
        for r in &report.rejected {
            println!("not re-encoded: {} ({})", r.id, r.reason);
        }
        engine.flush()?;
        anyhow::bail!(
            "{} of {} items could not be re-encoded; the data directory is marked unfinished and servers refuse it until a reembed completes (fix or delete those items, then run it again)",
            report.rejected.len(),
            report.items
        );
    }
    // Replaced versions leave tombstones of the old vectors; a rebuild drops them from the graph.
    let mut rx = engine.collection().rebuild();
    loop {
        let p = rx.borrow_and_update().clone();
        match p.phase {
            RebuildPhase::Done => break,
            RebuildPhase::Failed => {
                anyhow::bail!("rebuild failed: {}", p.error.unwrap_or_default())
            }
            phase => {
                print!(
                    "\rrebuild: {} {}/{}        ",
                    phase.as_str(),
                    p.done,
                    p.total
                );
                let _ = std::io::stdout().flush();
            }
        }
        if rx.changed().await.is_err() {
            break;
        }
    }
    engine.flush()?;
    println!(
        "\rdone in {:.1}s: {} items re-encoded, index rebuilt; start the server with these models",
        started.elapsed().as_secs_f64(),
        report.reencoded
    );
    Ok(())
}
