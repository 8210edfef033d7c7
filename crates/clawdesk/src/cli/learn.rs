//! The learning flags `train run` and `agent live` share, turned into the trainer's one set of
//! choices ([`LearningChoices`]) so both commands (and the window) train alike.

use clap::Args;
use clawdesk_model::LoraConfig;
use clawdesk_trainer::{LearningChoices, Method};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    #[value(name = "binary-rl")]
    BinaryRl,
    Opd,
    Combined,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Self {
        match m {
            MethodArg::BinaryRl => Method::BinaryRl,
            MethodArg::Opd => Method::Opd,
            MethodArg::Combined => Method::Combined,
        }
    }
}

/// How the adapter learns.
#[derive(Debug, Clone, Args)]
pub struct LearnArgs {
    /// Binary RL (the judge's +1/-1), hindsight OPD (the hint's teacher), or their weighted sum.
    #[arg(long, value_enum, default_value_t = MethodArg::Combined)]
    pub method: MethodArg,
    /// The Binary RL advantage's weight in the combined method.
    #[arg(long, default_value_t = 1.0)]
    pub w_rl: f32,
    /// The OPD advantage's weight in the combined method.
    #[arg(long, default_value_t = 1.0)]
    pub w_opd: f32,
    /// OPD compares teacher and student on the student's this many likeliest tokens at each
    /// position (the revised OpenClaw-RL's top-k); 0 compares them on the sampled token alone.
    #[arg(long, default_value_t = 4)]
    pub opd_top_k: usize,
    /// Clip each teacher gap to plus or minus this (2 for GUI steps, as OpenClaw-RL); 0: no clip.
    #[arg(long, default_value_t = clawdesk_trainer::GUI_GAP_CLIP)]
    pub opd_clip: f32,
    /// The learning rate (constant).
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f64,
    /// Judged steps per training update.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Write a resumable checkpoint every this many updates.
    #[arg(long, default_value_t = 10)]
    pub checkpoint_every: u64,
    /// The LoRA adapter's rank.
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// The LoRA adapter's alpha (its scale is alpha / rank).
    #[arg(long, default_value_t = 32.0)]
    pub alpha: f64,
}

impl LearnArgs {
    /// The trainer's choices; `max_staleness` is the command's own (live and offline differ).
    pub fn choices(&self, max_staleness: Option<u64>) -> LearningChoices {
        LearningChoices {
            method: self.method.into(),
            w_rl: self.w_rl,
            w_opd: self.w_opd,
            opd_form: clawdesk_trainer::OpdForm::from_k(self.opd_top_k),
            opd_clip: (self.opd_clip > 0.0).then_some(self.opd_clip),
            lr: self.lr,
            batch: self.batch,
            checkpoint_every: self.checkpoint_every,
            max_staleness,
        }
    }

    pub fn lora(&self) -> LoraConfig {
        LoraConfig::new(self.rank, self.alpha)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        learn: LearnArgs,
    }

    #[test]
    fn the_flags_defaults_are_the_trainers() {
        let cli = Cli::parse_from(["x"]);
        let staleness = LearningChoices::default().max_staleness;
        assert_eq!(cli.learn.choices(staleness), LearningChoices::default());
    }

    #[test]
    fn the_method_and_weights_reach_the_choices() {
        let cli = Cli::parse_from(["x", "--method", "opd", "--w-rl", "0.5", "--w-opd", "2"]);
        let c = cli.learn.choices(None);
        assert_eq!((c.method, c.w_rl, c.w_opd), (Method::Opd, 0.5, 2.0));
        let cli = Cli::parse_from(["x", "--opd-top-k", "0", "--opd-clip", "0"]);
        let c = cli.learn.choices(None);
        assert_eq!(
            (c.opd_form, c.opd_clip),
            (clawdesk_trainer::OpdForm::Token, None)
        );
    }
}
