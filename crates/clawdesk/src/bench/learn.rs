//! `clawdesk bench learn`: Binary RL, OPD and the combined method, each from the same
//! warm-started practice base on the same seeds, trained on gym tasks judged by rule
//! verifiers; held-out success before, along the way and after, in one table.

use std::fmt::Write as _;
use std::path::PathBuf;

use clawdesk_gym::TaskKind;
use clawdesk_trainer::gym::episode::HintWhen;
use clawdesk_trainer::gym::learn::{LearnEvent, LearnReport, LearnSettings, learn_on};
use clawdesk_trainer::gym::warm_start::{WarmStartSettings, practice_base_on};
use clawdesk_trainer::{Method, OpdForm};

use crate::cli::RecipeArg;

/// The methods the bench compares: the trainer's methods, OPD in either form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchMethod {
    /// The judge's ±1 alone.
    #[value(name = "binary-rl")]
    BinaryRl,
    /// OPD on the sampled token (the first paper's form).
    #[value(name = "opd-token")]
    OpdToken,
    /// OPD on the student's top-k (`--opd-top-k`).
    Opd,
    /// Binary RL plus top-k OPD.
    Combined,
    /// Binary RL plus OPD on the sampled token.
    #[value(name = "combined-token")]
    CombinedToken,
}

impl BenchMethod {
    fn method(self, k: usize) -> (Method, OpdForm) {
        let top = OpdForm::from_k(k);
        match self {
            BenchMethod::BinaryRl => (Method::BinaryRl, top),
            BenchMethod::OpdToken => (Method::Opd, OpdForm::Token),
            BenchMethod::Opd => (Method::Opd, top),
            BenchMethod::Combined => (Method::Combined, top),
            BenchMethod::CombinedToken => (Method::Combined, OpdForm::Token),
        }
    }
}

fn method_name(r: &LearnReport) -> String {
    match (r.method, r.opd_form) {
        (Method::BinaryRl, _) => "Binary RL".into(),
        (Method::Opd, form) => format!("OPD ({form})"),
        (Method::Combined, form) => format!("combined ({form})"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HintArg {
    /// Hints after wrong steps only.
    #[value(name = "on-failure")]
    OnFailure,
    Always,
}

#[derive(Debug, clap::Args)]
pub struct LearnBenchArgs {
    /// The first run's seed (task stream, adapters, sampling and held-out set); the runs take
    /// the seeds from here up, one per (base, run). The default, 101, is past every seed the
    /// recipe and the methods were tuned on (1-20), so its held-out sets were never looked at.
    #[arg(long, default_value_t = 101)]
    pub seed: u64,
    /// The first practice base's seed; the bases take the seeds from here up.
    #[arg(long, default_value_t = 1)]
    pub base_seed: u64,
    /// Practice bases, each made by the recipe with its own seed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub bases: u64,
    /// Runs of every method from each base, each on its own seed; the table gives their mean
    /// and spread over every (base, run), since one run of 100 held-out tasks is ±0.03 on its own.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: u64,
    /// One base and one run: the few-minute form.
    #[arg(long)]
    pub quick: bool,
    /// Which warm start makes the practice bases.
    #[arg(long, value_enum, default_value_t = RecipeArg::Practice)]
    pub recipe: RecipeArg,
    /// The methods to compare; repeatable. `opd` and `combined` use the student's top-k
    /// (`--opd-top-k`), `opd-token` and `combined-token` the sampled token.
    #[arg(long = "method", value_enum, default_values_t = [BenchMethod::BinaryRl, BenchMethod::OpdToken, BenchMethod::Opd, BenchMethod::Combined])]
    pub methods: Vec<BenchMethod>,
    /// How many of the student's likeliest tokens top-k OPD compares at each position.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub opd_top_k: u64,
    /// Clip each teacher gap to plus or minus this; 0: no clip.
    #[arg(long, default_value_t = clawdesk_trainer::GUI_GAP_CLIP)]
    pub opd_clip: f32,
    /// Updates per method.
    #[arg(long, default_value_t = LearnSettings::default().updates)]
    pub updates: usize,
    /// Train tasks per update.
    #[arg(long, default_value_t = LearnSettings::default().tasks)]
    pub tasks: usize,
    /// Rollouts per task (rewards are standardised within each task's rollouts).
    #[arg(long, default_value_t = LearnSettings::default().rollouts)]
    pub rollouts: usize,
    /// A step's reward is its vote alone, not the episode's outcome plus its vote.
    #[arg(long)]
    pub vote_reward_only: bool,
    /// Optimiser steps (PPO epochs) per batch of rollouts.
    #[arg(long, default_value_t = LearnSettings::default().epochs)]
    pub epochs: usize,
    /// Raw ±1 rewards instead of standardising them within each task's rollouts.
    #[arg(long)]
    pub raw_rewards: bool,
    /// The learning rate (constant).
    #[arg(long, default_value_t = LearnSettings::default().lr)]
    pub lr: f64,
    /// Only tasks of these kinds (click, type, menu) in training and evaluation; repeatable.
    /// Default: the kinds the practice bases were made for (the practice recipe's: click and
    /// menu).
    #[arg(long = "kind")]
    pub kinds: Vec<TaskKind>,
    /// Rank of each method's fresh LoRA (alpha is twice the rank).
    #[arg(long, default_value_t = LearnSettings::default().rank)]
    pub rank: usize,
    /// Updates between held-out evaluations.
    #[arg(long, default_value_t = LearnSettings::default().eval_every)]
    pub eval_every: usize,
    /// Held-out tasks per evaluation.
    #[arg(long, default_value_t = 100)]
    pub eval_tasks: usize,
    /// When the rule verifier's hint is given (OPD's teacher needs one).
    #[arg(long, value_enum, default_value_t = HintArg::OnFailure)]
    pub hints: HintArg,
    /// Supervised warm-start updates of the practice base (cached by its settings).
    #[arg(long, default_value_t = WarmStartSettings::default().steps)]
    pub warm_steps: usize,
    /// The practice base gives each of the gym's names and numbers a token of its own.
    #[arg(long)]
    pub word_tokens: bool,
    /// The practice base's warm start also trains the norm weights (see `gym base`).
    #[arg(long)]
    pub train_norms: bool,
    /// The practice base's warm start also trains the token embeddings.
    #[arg(long)]
    pub train_embeddings: bool,
    /// The practice base's demonstrated clicks quote the element line first (see `gym base`).
    #[arg(long)]
    pub grounded: bool,
    /// The practice base starts from weights drawn as HF does for training (see `gym base`).
    #[arg(long)]
    pub trainable_init: bool,
    /// Peak learning rate of the practice base's warm start.
    #[arg(long, default_value_t = WarmStartSettings::default().lr)]
    pub warm_lr: f64,
    /// Share of the practice base's demonstrations with the hint in the prompt.
    #[arg(long, default_value_t = WarmStartSettings::default().hint_share)]
    pub warm_hint_share: f64,
    /// Demonstrations per update of the practice base's warm start.
    #[arg(long, default_value_t = WarmStartSettings::default().batch)]
    pub warm_batch: usize,
    /// Hold the warm start's peak rate instead of a cosine decay (see `gym base --flat-lr`).
    #[arg(long)]
    pub warm_flat_lr: bool,
    /// Always-right demonstrations first, for this many warm-start updates, then
    /// `--warm-steps` imperfect ones (`gym base --ceiling-steps`).
    #[arg(long, default_value_t = 0)]
    pub warm_ceiling_steps: usize,
    /// Always-right updates on `--warm-lead-kind` alone before the mix
    /// (`gym base --lead-steps`).
    #[arg(long, default_value_t = 0)]
    pub warm_lead_steps: usize,
    /// The kinds of the warm start's lead phase (`gym base --lead-kind`); repeatable.
    #[arg(long = "warm-lead-kind")]
    pub warm_lead_kinds: Vec<TaskKind>,
    /// The warm start's embedding learning rate as a share of `--warm-lr`
    /// (`gym base --embeddings-lr-share`).
    #[arg(long, default_value_t = 1.0)]
    pub warm_embeddings_lr_share: f64,
    /// The warm start's prompt curriculum (`gym base --context-grow`).
    #[arg(long)]
    pub warm_context_grow: bool,
    /// Warm-start demonstrations of these kinds only (`gym base --kind`); repeatable.
    #[arg(long = "warm-kind")]
    pub warm_kinds: Vec<TaskKind>,
    /// Where practice bases are cached (default: the user cache directory).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Where the warm start and every method train: auto, cpu, cuda or cuda:N (always f32).
    #[arg(long, default_value = "auto")]
    pub device: clawdesk_model::DeviceChoice,
}

/// One run: every method from one base on one seed.
struct Run {
    base_seed: u64,
    seed: u64,
    /// In the order of `--method`.
    methods: Vec<LearnReport>,
}

/// The warm start of the base with `seed`: the practice recipe, or the flags' own.
fn warm_settings(args: &LearnBenchArgs, seed: u64) -> anyhow::Result<WarmStartSettings> {
    let flags = WarmStartSettings {
        seed,
        steps: args.warm_steps,
        word_tokens: args.word_tokens,
        train_norms: args.train_norms,
        train_embeddings: args.train_embeddings,
        grounded: args.grounded,
        trainable_init: args.trainable_init,
        lr: args.warm_lr,
        batch: args.warm_batch,
        hint_share: args.warm_hint_share,
        flat_lr: args.warm_flat_lr,
        ceiling_steps: args.warm_ceiling_steps,
        lead_steps: args.warm_lead_steps,
        lead_kinds: args.warm_lead_kinds.clone(),
        embeddings_lr_share: args.warm_embeddings_lr_share,
        context_grow: args.warm_context_grow,
        kinds: args.warm_kinds.clone(),
        ..WarmStartSettings::default()
    };
    args.recipe.settings(flags)
}

pub fn run(args: LearnBenchArgs) -> anyhow::Result<String> {
    // The kinds the bases were made for, unless asked otherwise.
    let kinds = if args.kinds.is_empty() {
        TaskKind::or_all(&warm_settings(&args, args.base_seed)?.kinds)
    } else {
        args.kinds.clone()
    };
    let cache = match args.cache.clone() {
        Some(c) => c,
        None => clawdesk_runtime::paths::default_cache()?,
    };
    let (bases, runs) = if args.quick {
        (1, 1)
    } else {
        (args.bases, args.runs)
    };
    let device = args.device.open()?;
    let mut warm_reports = Vec::new();
    let mut all = Vec::new();
    for b in 0..bases {
        let base_seed = args.base_seed + b;
        let warm = warm_settings(&args, base_seed)?;
        let (base, warm_report) = practice_base_on(
            &cache,
            &warm,
            &device,
            &mut crate::cli::progress::warm_start(),
        )?;
        tracing::info!(
            base = %base.display(),
            without_hint = warm_report.success_without_hint,
            with_hint = warm_report.success_with_hint,
            "practice base ready"
        );
        warm_reports.push(warm_report);
        for r in 0..runs {
            let seed = args.seed + b * runs + r;
            let mut methods = Vec::new();
            for m in &args.methods {
                methods.push(learn_one(
                    &args,
                    &base,
                    &kinds,
                    m.method(args.opd_top_k as usize),
                    seed,
                    &device,
                )?);
            }
            all.push(Run {
                base_seed,
                seed,
                methods,
            });
        }
    }
    Ok(render(&args, &warm_reports, &all))
}

/// One method's run from the base on `seed`, logging its evaluations and updates.
fn learn_one(
    args: &LearnBenchArgs,
    base: &std::path::Path,
    kinds: &[TaskKind],
    (method, opd_form): (Method, OpdForm),
    seed: u64,
    device: &candle_core::Device,
) -> anyhow::Result<LearnReport> {
    let settings = LearnSettings {
        method,
        opd_form,
        opd_clip: (args.opd_clip > 0.0).then_some(args.opd_clip),
        updates: args.updates,
        tasks: args.tasks,
        rollouts: args.rollouts,
        standardise: !args.raw_rewards,
        outcome_reward: !args.vote_reward_only,
        epochs: args.epochs,
        lr: args.lr,
        rank: args.rank,
        kinds: kinds.to_vec(),
        alpha: 2.0 * args.rank as f64,
        seed,
        eval_every: args.eval_every,
        eval_tasks: args.eval_tasks,
        hints: match args.hints {
            HintArg::OnFailure => HintWhen::OnFailure,
            HintArg::Always => HintWhen::Always,
        },
        ..LearnSettings::default()
    };
    let name = match (method, opd_form) {
        (Method::BinaryRl, _) => "Binary RL".to_string(),
        (m, form) => format!("{m:?} ({form})"),
    };
    let name = name.as_str();
    Ok(learn_on(base, &settings, device, &mut |e| match e {
        LearnEvent::Evaluated { update, success } => {
            tracing::info!(method = name, seed, update, success, "held-out success");
        }
        LearnEvent::Updated {
            update,
            metrics,
            batch_reward,
            flat,
        } => tracing::info!(
            flat,
            method = name,
            update,
            batch_reward,
            loss = metrics.loss,
            gap = metrics.mean_gap,
            hint_overlap = metrics.hint_overlap,
            dropped_no_signal = metrics.dropped_no_signal,
            grad_norm = metrics.grad_norm,
            clip_fraction = metrics.clip_fraction,
            approx_kl = metrics.approx_kl,
            samples = metrics.samples,
            "update"
        ),
        LearnEvent::Skipped { update, reason } => {
            tracing::warn!(method = name, update, reason, "update skipped");
        }
    })?)
}

/// Mean and sample standard deviation (0 for a single value).
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Each method's final held-out success per task kind (mean ± sd over runs), when the runs
/// evaluated more than one kind.
fn by_kind(out: &mut String, runs: &[Run]) {
    let Some(first) = runs.first() else {
        return;
    };
    let kinds: Vec<TaskKind> = first
        .methods
        .first()
        .map(|r| r.after_by_kind.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    if kinds.len() < 2 {
        return;
    }
    let _ = writeln!(
        out,
        "\nheld-out success by kind after the last update\n\n| method | {} |\n|---|{}",
        kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(" | "),
        "---:|".repeat(kinds.len())
    );
    for (m, report) in first.methods.iter().enumerate() {
        let cells: Vec<String> = kinds
            .iter()
            .map(|kind| {
                let values: Vec<f64> = runs
                    .iter()
                    .filter_map(|run| run.methods.get(m))
                    .filter_map(|r| r.after_by_kind.iter().find(|(k, _)| k == kind))
                    .map(|(_, s)| *s)
                    .collect();
                let (mean, sd) = mean_sd(&values);
                if values.len() > 1 {
                    format!("{mean:.2} ± {sd:.2}")
                } else {
                    format!("{mean:.2}")
                }
            })
            .collect();
        let _ = writeln!(out, "| {} | {} |", method_name(report), cells.join(" | "));
    }
}

/// The paired difference, run by run, of each combined method's final success against every
/// other method's, with its t (mean over the standard error); needs two runs or more.
fn paired(out: &mut String, runs: &[Run]) {
    let n = runs.len();
    let methods = runs.first().map_or(0, |r| r.methods.len());
    if n < 2 {
        return;
    }
    let mut lines = Vec::new();
    for c in 0..methods {
        if runs[0].methods[c].method != Method::Combined {
            continue;
        }
        for o in (0..methods).filter(|&o| o != c) {
            let diffs: Vec<f64> = runs
                .iter()
                .map(|r| r.methods[c].after - r.methods[o].after)
                .collect();
            let (mean, sd) = mean_sd(&diffs);
            let t = if sd > 0.0 {
                format!("{:.1}", mean / (sd / (n as f64).sqrt()))
            } else {
                "—".into()
            };
            lines.push(format!(
                "| {} − {} | {mean:+.3} | {sd:.3} | {t} |",
                method_name(&runs[0].methods[c]),
                method_name(&runs[0].methods[o])
            ));
        }
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\npaired by run ({n} runs): final success of combined minus each other method\n\n\
         | pair | mean difference | sd | paired t |\n|---|---:|---:|---:|"
    );
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
}

/// A range of seeds as text: "seed 4" or "seeds 4-6".
fn seed_range(first: u64, count: usize) -> String {
    if count > 1 {
        format!("seeds {first}-{}", first + count as u64 - 1)
    } else {
        format!("seed {first}")
    }
}

/// The table: `warm` per base, `runs` in order, methods in the same order in every run.
fn render(
    args: &LearnBenchArgs,
    warm: &[clawdesk_trainer::gym::WarmStartReport],
    runs: &[Run],
) -> String {
    let mut out = String::new();
    let n = runs.len();
    let _ = writeln!(
        out,
        "bench learn — {} runs ({}) from {} practice base{} ({}), {} updates × {} tasks × {} rollouts (rewards {}), {} epochs, lr {}, hints {:?}, held-out tasks {}",
        n,
        seed_range(runs.first().map_or(args.seed, |r| r.seed), n),
        warm.len(),
        if warm.len() == 1 { "" } else { "s" },
        seed_range(
            warm.first().map_or(args.base_seed, |w| w.settings.seed),
            warm.len()
        ),
        args.updates,
        args.tasks,
        args.rollouts,
        if args.raw_rewards {
            "raw ±1"
        } else {
            "standardised per task"
        },
        args.epochs,
        args.lr,
        args.hints,
        args.eval_tasks,
    );
    for w in warm {
        let _ = writeln!(
            out,
            "- practice base seed {}: warm start {} steps ({:.0} s), held-out greedy success {:.2} without hint, \
             {:.2} with the hint in context",
            w.settings.seed,
            w.settings.lead_steps + w.settings.ceiling_steps + w.settings.steps,
            w.seconds,
            w.success_without_hint,
            w.success_with_hint,
        );
    }
    let _ = writeln!(out);
    let target = LearnSettings::default().target;
    let per_run = if n > 1 {
        format!(" (mean ± sd of {n} runs)")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "| method | held-out before | after {} updates{per_run} | best | updates to {target:.1} | wall s | trained samples/update | skipped |",
        args.updates,
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let methods = runs.first().map_or(0, |r| r.methods.len());
    for m in 0..methods {
        let of: Vec<&LearnReport> = runs.iter().filter_map(|run| run.methods.get(m)).collect();
        let stat =
            |f: fn(&LearnReport) -> f64| mean_sd(&of.iter().map(|r| f(r)).collect::<Vec<_>>());
        let (before, _) = stat(|r| r.before);
        let (after, sd) = stat(|r| r.after);
        let (best, _) = stat(|r| r.curve.iter().map(|&(_, s)| s).fold(0.0, f64::max));
        let (seconds, _) = stat(|r| r.seconds);
        let (samples, _) = stat(|r| {
            if r.metrics.is_empty() {
                0.0
            } else {
                r.metrics.iter().map(|m| m.samples as f64).sum::<f64>() / r.metrics.len() as f64
            }
        });
        let reached: Vec<f64> = of
            .iter()
            .filter_map(|r| r.updates_to_target.map(|u| u as f64))
            .collect();
        let to_target = match reached.len() {
            0 => "not reached".to_string(),
            k if k == of.len() => format!("{:.0}", mean_sd(&reached).0),
            k => format!("{:.0} ({k} of {} runs)", mean_sd(&reached).0, of.len()),
        };
        let after = if n > 1 {
            format!("{after:.2} ± {sd:.2}")
        } else {
            format!("{after:.2}")
        };
        let skipped: usize = of.iter().map(|r| r.skipped).sum();
        let _ = writeln!(
            out,
            "| {} | {before:.2} | {after} | {best:.2} | {to_target} | {seconds:.0} | {samples:.1} | {skipped} |",
            method_name(of[0]),
        );
    }
    by_kind(&mut out, runs);
    paired(&mut out, runs);
    let _ = writeln!(out, "\ncurves (update: held-out success):");
    for run in runs {
        for r in &run.methods {
            let points: Vec<String> = r.curve.iter().map(|(u, s)| format!("{u}:{s:.2}")).collect();
            let _ = writeln!(
                out,
                "- {} (base {}, seed {}): {}",
                method_name(r),
                run.base_seed,
                run.seed,
                points.join(" ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LearnBenchArgs,
    }

    fn report(method: Method, after: f64, to_target: Option<usize>) -> LearnReport {
        LearnReport {
            method,
            opd_form: OpdForm::TopK { k: 4 },
            before: 0.4,
            after,
            curve: vec![(0, 0.4), (40, after)],
            updates_to_target: to_target,
            after_by_kind: vec![(TaskKind::Click, after), (TaskKind::Menu, after / 2.0)],
            seconds: 30.0,
            metrics: Vec::new(),
            skipped: 1,
        }
    }

    #[test]
    fn several_runs_are_one_row_per_method_with_their_mean_and_spread() {
        let args = Cli::parse_from(["bench", "--seed", "3", "--runs", "2", "--bases", "1"]).args;
        let warm = clawdesk_trainer::gym::WarmStartReport {
            recipe: 2,
            settings: WarmStartSettings::default(),
            final_loss: 0.1,
            success_without_hint: 0.5,
            success_with_hint: 1.0,
            seconds: 60.0,
            device: "cpu".into(),
            curriculum: None,
        };
        let reports = vec![
            Run {
                base_seed: 1,
                seed: 3,
                methods: vec![
                    report(Method::BinaryRl, 0.8, Some(40)),
                    report(Method::Combined, 0.9, Some(20)),
                ],
            },
            Run {
                base_seed: 1,
                seed: 4,
                methods: vec![
                    report(Method::BinaryRl, 0.9, None),
                    report(Method::Combined, 0.9, Some(40)),
                ],
            },
        ];
        let table = render(&args, &[warm], &reports);
        assert!(
            table.contains("2 runs (seeds 3-4) from 1 practice base (seed 1)"),
            "{table}"
        );
        assert!(table.contains("(mean ± sd of 2 runs)"), "{table}");
        assert!(
            table.contains(
                "| Binary RL | 0.40 | 0.85 ± 0.07 | 0.85 | 40 (1 of 2 runs) | 30 | 0.0 | 2 |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| combined (top-4) | 0.40 | 0.90 ± 0.00 | 0.90 | 30 | 30 | 0.0 | 2 |"),
            "{table}"
        );
        // One row in the table, one in the table by kind.
        assert_eq!(table.matches("| Binary RL |").count(), 2, "{table}");
        assert!(
            table.contains("- combined (top-4) (base 1, seed 4): 0:0.40 40:0.90"),
            "{table}"
        );
        assert!(
            table.contains("| Binary RL | 0.85 ± 0.07 | 0.43 ± 0.04 |"),
            "{table}"
        );
        // Run 1: 0.9 − 0.8; run 2: 0.9 − 0.9: mean 0.05, sd 0.0707, t 1.0.
        assert!(
            table.contains("| combined (top-4) − Binary RL | +0.050 | 0.071 | 1.0 |"),
            "{table}"
        );
    }

    #[test]
    fn the_bases_are_the_practice_recipe_unless_the_flags_ask_for_their_own() {
        let args = Cli::parse_from(["bench"]).args;
        assert_eq!((args.bases, args.runs, args.seed), (3, 3, 101));
        assert_eq!(
            warm_settings(&args, 2).expect("practice"),
            WarmStartSettings::practice(2)
        );
        let stray = Cli::parse_from(["bench", "--word-tokens"]).args;
        let err = warm_settings(&stray, 1).expect_err("a flag without --recipe flags");
        assert!(err.to_string().contains("--recipe flags"), "{err}");
        let own = Cli::parse_from(["bench", "--recipe", "flags", "--word-tokens"]).args;
        let settings = warm_settings(&own, 4).expect("flags");
        assert!(settings.word_tokens && settings.seed == 4 && settings.lead_steps == 0);
    }

    #[test]
    fn the_spread_is_the_sample_standard_deviation() {
        assert_eq!(mean_sd(&[0.9]), (0.9, 0.0));
        let (mean, sd) = mean_sd(&[0.8, 0.9, 1.0]);
        assert!((mean - 0.9).abs() < 1e-12);
        assert!((sd - 0.1).abs() < 1e-12, "{sd}");
    }
}
