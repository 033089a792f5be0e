//! The evaluation report (JSON + a human table) and the regression baseline it is checked against.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One measured block, e.g. `vendure/fused/paraphrases` with R@1/5/10 and MRR.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Section {
    pub name: String,
    /// Queries (or images) the metrics average over.
    pub n: usize,
    /// Every value is "higher is better" (word accuracy is reported as 1 − WER), which is what
    /// the baseline check relies on.
    pub metrics: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// One spoken query: what was said, what Whisper heard, and where the target ranked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TranscriptRow {
    pub set: String,
    pub said: String,
    pub heard: String,
    pub rank_typed: Option<usize>,
    pub rank_voice: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    pub what: String,
    pub items: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub profile: String,
    pub date_utc: String,
    pub machine: String,
    pub models: Vec<String>,
    pub sections: Vec<Section>,
    pub transcripts: Vec<TranscriptRow>,
    pub timings: Vec<Timing>,
    pub total_seconds: f64,
}

impl Report {
    /// `section/metric` → value, the form the baseline stores.
    pub fn flat(&self) -> BTreeMap<String, f64> {
        self.sections
            .iter()
            .flat_map(|s| {
                s.metrics
                    .iter()
                    .map(move |(k, v)| (format!("{}/{k}", s.name), *v))
            })
            .collect()
    }

    /// Markdown tables: metrics per section, encode timings, and the transcripts.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "profile {} · {} · {}",
            self.profile, self.date_utc, self.machine
        );
        let _ = writeln!(out, "models: {}\n", self.models.join(", "));
        let cols = ["R@1", "R@5", "R@10", "MRR"];
        let _ = writeln!(out, "| set | n | R@1 | R@5 | R@10 | MRR | other |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for s in &self.sections {
            let cell = |k: &str| {
                s.metrics
                    .get(k)
                    .map_or(String::new(), |v| format!("{v:.3}"))
            };
            let other: Vec<String> = s
                .metrics
                .iter()
                .filter(|(k, _)| !cols.contains(&k.as_str()))
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect();
            let mut other = other.join(", ");
            if !s.note.is_empty() {
                let _ = write!(
                    other,
                    "{}{}",
                    if other.is_empty() { "" } else { " — " },
                    s.note
                );
            }
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                s.name,
                s.n,
                cell("R@1"),
                cell("R@5"),
                cell("R@10"),
                cell("MRR"),
                other
            );
        }
        if !self.timings.is_empty() {
            let _ = writeln!(
                out,
                "\n| ingest (encode + fuse + write) | items | s | items/s |\n|---|---|---|---|"
            );
            for t in &self.timings {
                let rate = if t.seconds > 0.0 {
                    t.items as f64 / t.seconds
                } else {
                    0.0
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} | {:.1} |",
                    t.what, t.items, t.seconds, rate
                );
            }
        }
        if !self.transcripts.is_empty() {
            let _ = writeln!(
                out,
                "\n| set | said | heard | rank typed | rank voice |\n|---|---|---|---|---|"
            );
            let r = |x: Option<usize>| x.map_or("–".to_string(), |x| x.to_string());
            for t in &self.transcripts {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    t.set,
                    t.said,
                    t.heard,
                    r(t.rank_typed),
                    r(t.rank_voice)
                );
            }
        }
        let _ = writeln!(out, "\ntotal {:.0} s", self.total_seconds);
        out
    }
}

/// Recorded values for one profile; a metric may drop at most `tolerance` below them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub profile: String,
    pub tolerance: f64,
    pub recorded: String,
    pub metrics: BTreeMap<String, f64>,
}

impl Baseline {
    pub fn from_report(report: &Report, tolerance: f64) -> Baseline {
        Baseline {
            profile: report.profile.clone(),
            tolerance,
            recorded: format!("{} on {}", report.date_utc, report.machine),
            metrics: report.flat(),
        }
    }

    /// One line per regression: a metric more than `tolerance` below its recorded value, or a
    /// recorded metric the report no longer has. Improvements pass (re-record to tighten).
    pub fn regressions(&self, report: &Report) -> Vec<String> {
        let now = report.flat();
        let mut out = Vec::new();
        if report.profile != self.profile {
            out.push(format!(
                "report profile {:?} ≠ baseline profile {:?}",
                report.profile, self.profile
            ));
        }
        for (k, &want) in &self.metrics {
            match now.get(k) {
                None => out.push(format!("{k}: missing from the report (recorded {want:.3})")),
                Some(&got) if got < want - self.tolerance => out.push(format!(
                    "{k}: {got:.3} < recorded {want:.3} − {:.2}",
                    self.tolerance
                )),
                Some(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(v: f64) -> Report {
        Report {
            profile: "ci".into(),
            date_utc: String::new(),
            machine: String::new(),
            models: vec![],
            sections: vec![Section {
                name: "a/b".into(),
                n: 1,
                metrics: BTreeMap::from([("MRR".into(), v)]),
                note: String::new(),
            }],
            transcripts: vec![],
            timings: vec![],
            total_seconds: 0.0,
        }
    }

    #[test]
    fn baseline_flags_only_drops_beyond_tolerance() {
        let b = Baseline::from_report(&report(0.50), 0.02);
        assert!(b.regressions(&report(0.49)).is_empty());
        assert!(b.regressions(&report(0.90)).is_empty());
        assert_eq!(b.regressions(&report(0.47)).len(), 1);
        let mut missing = report(0.5);
        missing.sections.clear();
        assert_eq!(b.regressions(&missing).len(), 1);
    }
}
