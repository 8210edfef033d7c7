//! `clawdesk bench probe`: what the tiny practice model learns to attend to, one kind of
//! attention per task, trained as the warm start trains it. The gym's element lookup is the
//! recall task (match the named key, copy what follows it); the offset and membership tasks
//! are its two halves alone, so the table shows whether a shape can learn each step and
//! their chain.

use std::fmt::Write as _;

use clawdesk_trainer::probe::{ProbeReport, ProbeSettings, ProbeTask, run_probe};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeTaskArg {
    Offset,
    Membership,
    Recall,
}

impl ProbeTaskArg {
    fn task(self) -> ProbeTask {
        match self {
            ProbeTaskArg::Offset => ProbeTask::Offset,
            ProbeTaskArg::Membership => ProbeTask::Membership,
            ProbeTaskArg::Recall => ProbeTask::Recall,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ProbeBenchArgs {
    /// Where the probe's model trains: auto, cpu, cuda or cuda:N (always f32).
    #[arg(long, default_value = "auto")]
    pub device: clawdesk_model::DeviceChoice,
    /// Seed of the tiny model, the adapter and the sequences.
    #[arg(long, default_value_t = ProbeSettings::default().seed)]
    pub seed: u64,
    /// The attention tasks to probe; repeatable.
    #[arg(long = "task", value_enum, default_values_t = [ProbeTaskArg::Offset, ProbeTaskArg::Membership, ProbeTaskArg::Recall])]
    pub tasks: Vec<ProbeTaskArg>,
    /// Training steps per task.
    #[arg(long, default_value_t = ProbeSettings::default().steps)]
    pub steps: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = ProbeSettings::default().batch)]
    pub batch: usize,
    /// The learning rate (constant).
    #[arg(long, default_value_t = ProbeSettings::default().lr)]
    pub lr: f64,
    /// Key-value pairs per sequence.
    #[arg(long, default_value_t = ProbeSettings::default().pairs)]
    pub pairs: usize,
    /// The LoRA adapter's rank.
    #[arg(long, default_value_t = ProbeSettings::default().rank)]
    pub rank: usize,
    /// Also train the norm weights and the token embeddings.
    #[arg(long)]
    pub train_base: bool,
    /// Also train the norm weights only.
    #[arg(long)]
    pub train_norms: bool,
    /// Also train the token embeddings and the head (tied, or untied beside them) only.
    #[arg(long)]
    pub train_embeddings: bool,
    /// The embeddings' learning rate as a share of --lr.
    #[arg(long, default_value_t = 1.0)]
    pub embeddings_lr_share: f64,
    /// Keep the trained norms and embeddings fixed until this step (the adapter alone
    /// trains before it).
    #[arg(long, default_value_t = 0)]
    pub base_from_step: usize,
    /// Draw the language model's random weights as HF does for training (small, near the
    /// identity) instead of at order one.
    #[arg(long)]
    pub trainable_init: bool,
    /// Overrides of the tiny model's HF config, as JSON merged over the warm start's shape
    /// (for example '{"text_config": {"rope_theta": 10000}}').
    #[arg(long)]
    pub text_config: Option<String>,
    /// Steps between held-out evaluations.
    #[arg(long, default_value_t = ProbeSettings::default().eval_every)]
    pub eval_every: usize,
    /// Fixed tokens between each key and its value (the gym's element line has two).
    #[arg(long, default_value_t = 0)]
    pub gap: usize,
    /// Random filler tokens before the pairs (the gym's shipped prompt has ~30 before its
    /// list and ~60 between the list and the reply).
    #[arg(long, default_value_t = 0)]
    pub prefix: usize,
    /// A curriculum: train from no filler, adding this many tokens (up to --prefix) each
    /// time a check at the current length is 0.9 right. Held-out sequences always carry the
    /// full prefix.
    #[arg(long, default_value_t = 0)]
    pub prefix_grow: usize,
}

pub fn run(args: ProbeBenchArgs) -> anyhow::Result<String> {
    let mut config = ProbeSettings::default().config;
    if let Some(text) = &args.text_config {
        let overlay: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| super::failed(format!("--text-config is not JSON: {e}")))?;
        clawdesk_model::tiny::merge_json(&mut config, &overlay);
    }
    let device = args.device.open()?;
    let mut reports = Vec::new();
    for task in &args.tasks {
        let settings = ProbeSettings {
            task: task.task(),
            seed: args.seed,
            steps: args.steps,
            batch: args.batch,
            lr: args.lr,
            pairs: args.pairs,
            rank: args.rank,
            train_norms: args.train_base || args.train_norms,
            train_embeddings: args.train_base || args.train_embeddings,
            embeddings_lr_share: args.embeddings_lr_share,
            base_from_step: args.base_from_step,
            trainable_init: args.trainable_init,
            config: config.clone(),
            eval_every: args.eval_every,
            gap: args.gap,
            prefix: args.prefix,
            prefix_grow: args.prefix_grow,
            ..ProbeSettings::default()
        };
        let name = settings.task.name();
        let report = run_probe(&settings, &device, &mut |step, accuracy| {
            tracing::info!(task = name, step, accuracy, "held-out accuracy");
        })?;
        reports.push(report);
    }
    Ok(render(&args, &reports))
}

fn render(args: &ProbeBenchArgs, reports: &[ProbeReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Attention probes on the tiny model (seed {}, {} steps x {} sequences, lr {}, rank {}{}{}{}, {} pairs, gap {}, prefix {}{})\n",
        args.seed,
        args.steps,
        args.batch,
        args.lr,
        args.rank,
        match (
            args.train_base || args.train_norms,
            args.train_base || args.train_embeddings,
        ) {
            (true, true) => ", norms and embeddings trained",
            (true, false) => ", norms trained",
            (false, true) => ", embeddings trained",
            (false, false) => "",
        },
        if args.base_from_step > 0 {
            format!(" from step {}", args.base_from_step)
        } else {
            String::new()
        },
        if args.trainable_init {
            ", trainable init"
        } else {
            ""
        },
        args.pairs,
        args.gap,
        args.prefix,
        if args.prefix_grow > 0 {
            format!(" grown by {} from none", args.prefix_grow)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "| task | attends by | chance | held-out before | after {} steps | best | final loss | full prefix from step | wall s |",
        args.steps
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        let task = r.settings.task;
        let by = match task {
            ProbeTask::Offset => "place",
            ProbeTask::Membership => "content",
            ProbeTask::Recall => "content, then place",
        };
        let best = r.curve.iter().map(|&(_, a)| a).fold(0.0, f64::max);
        let before = r.curve.first().map_or(0.0, |&(_, a)| a);
        let _ = writeln!(
            out,
            "| {} | {by} | {:.2} | {before:.2} | {:.2} | {best:.2} | {:.3} | {} | {:.0} |",
            task.name(),
            task.chance(r.settings.pairs),
            r.final_accuracy(),
            r.final_loss,
            r.full_prefix_from
                .map_or_else(|| "never".to_owned(), |s| s.to_string()),
            r.seconds
        );
    }
    let _ = writeln!(out);
    for r in reports {
        let curve: Vec<String> = r.curve.iter().map(|(s, a)| format!("{s}:{a:.2}")).collect();
        let _ = writeln!(out, "{}: {}", r.settings.task.name(), curve.join(" "));
    }
    out
}
