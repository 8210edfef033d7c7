//! Benchmarks that print a table of our figures beside a baseline's, measured in the same run.

pub mod agent;
pub mod judge;
pub mod learn;
pub mod model;
pub mod observe;
pub mod probe;
pub mod serve;

use std::fmt::Write as _;

use clawdesk_desktop::{Sandbox, SandboxOptions};

/// A baseline or helper program that failed.
#[derive(Debug)]
pub(crate) struct External {
    pub program: String,
    pub detail: String,
}

impl std::fmt::Display for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.program, self.detail)
    }
}

impl std::error::Error for External {}

/// A benchmark that could not run, named as such.
pub(crate) fn failed(detail: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("benchmark: {detail}")
}

/// A private display of `width`x`height` for a benchmark to launch its app in.
pub(crate) async fn start_sandbox(width: u32, height: u32) -> anyhow::Result<Sandbox> {
    let options = SandboxOptions {
        width,
        height,
        ..SandboxOptions::default()
    };
    tokio::task::spawn_blocking(move || Sandbox::start(&options))
        .await
        .map_err(|e| {
            anyhow::Error::from(External {
                program: "sandbox".into(),
                detail: e.to_string(),
            })
        })?
        .map_err(anyhow::Error::from)
}

/// The model a benchmark runs: the one named, else a seeded tiny model written into `work`.
pub(crate) fn model_or_tiny(model: Option<&str>, work: &std::path::Path) -> anyhow::Result<String> {
    match model {
        Some(m) => Ok(m.to_owned()),
        None => {
            let dir = work.join("tiny");
            clawdesk_model::tiny::write_tiny_model(
                &dir,
                &clawdesk_model::tiny::default_config(),
                1,
            )?;
            Ok(dir.display().to_string())
        }
    }
}

/// Percentiles of a set of timings, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub p50: f64,
    pub p95: f64,
    pub n: usize,
}

impl Stats {
    /// Nearest-rank percentiles; `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        s.sort_by(f64::total_cmp);
        let rank = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
        Some(Stats {
            p50: rank(0.50),
            p95: rank(0.95),
            n: s.len(),
        })
    }
}

/// One row: an operation, ours, the baseline's.
#[derive(Debug, Clone)]
pub struct Row {
    pub what: String,
    pub ours: Option<Stats>,
    pub baseline: Option<Stats>,
}

/// Renders rows as a Markdown table with the baseline/ours ratio of p50 (>1 means we are faster).
pub fn table(title: &str, baseline_name: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title}\n");
    let _ = writeln!(
        out,
        "| operation | ClawDesk p50 ms | p95 ms | {baseline_name} p50 ms | p95 ms | speed-up (p50) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    let f = |s: Option<Stats>, pick: fn(&Stats) -> f64| {
        s.map_or("—".to_owned(), |s| format!("{:.2}", pick(&s)))
    };
    for r in rows {
        let ratio = match (r.ours, r.baseline) {
            (Some(o), Some(b)) if o.p50 > 0.0 => format!("{:.1}×", b.p50 / o.p50),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.what,
            f(r.ours, |s| s.p50),
            f(r.ours, |s| s.p95),
            f(r.baseline, |s| s.p50),
            f(r.baseline, |s| s.p95),
            ratio
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s = Stats::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.p50, s.p95, s.n), (3.0, 5.0, 5));
        let s = Stats::of(&(1..=100).map(f64::from).collect::<Vec<_>>()).unwrap();
        assert_eq!((s.p50, s.p95), (50.0, 95.0));
        assert!(Stats::of(&[]).is_none());
    }

    #[test]
    fn table_shows_ratio_of_medians() {
        let s = |p50| {
            Some(Stats {
                p50,
                p95: p50 * 2.0,
                n: 3,
            })
        };
        let t = table(
            "T",
            "base",
            &[Row {
                what: "capture".into(),
                ours: s(2.0),
                baseline: s(20.0),
            }],
        );
        assert!(
            t.contains("| capture | 2.00 | 4.00 | 20.00 | 40.00 | 10.0× |"),
            "{t}"
        );
    }
}
