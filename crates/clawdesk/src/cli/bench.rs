use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Debug, Subcommand)]
enum BenchWhat {
    /// Capture, tree walk, PNG encode and store insert on a real app, beside OSWorld's stack.
    Observe(crate::bench::observe::ObserveBenchArgs),
    /// Judged steps per second against an endpoint with a set latency, per concurrency.
    Judge(crate::bench::judge::JudgeBenchArgs),
    /// Prefill, decode and LoRA train-step throughput beside PyTorch + transformers + PEFT.
    Model(crate::bench::model::ModelBenchArgs),
    /// Binary RL, OPD and combined on the gym: held-out success before and after, wall time.
    Learn(crate::bench::learn::LearnBenchArgs),
    /// What the tiny practice model learns to attend to: by place, by content, and both in
    /// turn (the gym's element lookup), each against chance.
    Probe(crate::bench::probe::ProbeBenchArgs),
    /// Agent step latency with the trainer idle and with it training, in one run.
    Agent(crate::bench::agent::AgentBenchArgs),
    /// The OpenAI-compatible server on loopback: latency beside a direct policy call, many
    /// concurrent clients, and the body and image limits.
    Serve(crate::bench::serve::ServeBenchArgs),
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        BenchWhat::Observe(a) => {
            let table = crate::bench::observe::run(a).await?;
            println!("{table}");
            Ok(())
        }
        BenchWhat::Judge(a) => {
            let table = crate::bench::judge::run(a).await?;
            println!("{table}");
            Ok(())
        }
        BenchWhat::Model(a) => {
            let table = tokio::task::block_in_place(|| crate::bench::model::run(a))?;
            println!("{table}");
            Ok(())
        }
        BenchWhat::Agent(a) => {
            let table = crate::bench::agent::run(a).await?;
            println!("{table}");
            Ok(())
        }
        BenchWhat::Serve(a) => {
            let report = crate::bench::serve::run(a).await?;
            println!("{}", report.table);
            if !report.problems.is_empty() {
                anyhow::bail!(
                    "{} answers were neither 200 nor a deliberate 429, or a limit did not hold",
                    report.problems.len()
                );
            }
            Ok(())
        }
        BenchWhat::Probe(a) => {
            let table = tokio::task::block_in_place(|| crate::bench::probe::run(a))?;
            println!("{table}");
            Ok(())
        }
        BenchWhat::Learn(a) => {
            let table = tokio::task::block_in_place(|| crate::bench::learn::run(a))?;
            println!("{table}");
            Ok(())
        }
    }
}
