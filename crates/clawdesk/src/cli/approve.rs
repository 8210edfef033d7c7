//! `--approve`: a person at the terminal approves each action before it runs.

use std::future::Future;
use std::io::{BufRead, Write};
use std::pin::Pin;

use clawdesk_desktop::{ApprovalRequest, Approver, Decision};

/// Asks on stderr and reads the answer from stdin: `y` runs the action, anything else (or a
/// closed stdin) rejects it, with the rest of the line as the reason.
pub struct TerminalApprover;

impl Approver for TerminalApprover {
    fn approve<'a>(
        &'a self,
        request: &'a ApprovalRequest,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        let prompt = format!(
            "step {}: {}{} — run it? [y/N, or a reason] ",
            request.step + 1,
            request.description,
            request
                .app
                .as_deref()
                .map(|a| format!(" in {a}"))
                .unwrap_or_default()
        );
        Box::pin(async move {
            let answer = tokio::task::spawn_blocking(move || {
                let mut err = std::io::stderr();
                let _ = write!(err, "{prompt}");
                let _ = err.flush();
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map(|_| line)
            })
            .await;
            match answer {
                Ok(Ok(line)) => parse_answer(&line),
                _ => Decision::Reject {
                    reason: Some("no answer (stdin closed)".into()),
                },
            }
        })
    }
}

fn parse_answer(line: &str) -> Decision {
    let line = line.trim();
    match line.to_ascii_lowercase().as_str() {
        "y" | "yes" => Decision::Approve,
        "" | "n" | "no" => Decision::Reject { reason: None },
        _ => Decision::Reject {
            reason: Some(line.to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(parse_answer("y\n"), Decision::Approve);
        assert_eq!(parse_answer(" YES "), Decision::Approve);
        assert_eq!(parse_answer("\n"), Decision::Reject { reason: None });
        assert_eq!(
            parse_answer("wrong window\n"),
            Decision::Reject {
                reason: Some("wrong window".into())
            }
        );
    }
}
