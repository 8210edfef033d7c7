//! A person as judge: questions go to whoever shows them (the app's timeline or approval card),
//! answers come back as verdicts that override any model judge's.

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use clawdesk_store::{NewVerdict, StepId, VerdictSource};

use crate::case::StepCase;
use crate::error::{JudgeError, Result};
use crate::judge::{Judge, Judgement};

/// What a person says of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonAnswer {
    /// Approve (+1) or reject (-1).
    pub approve: bool,
    /// The action the agent should have taken, in the internal form.
    pub correction: Option<serde_json::Value>,
    /// A typed hint for distillation.
    pub hint: Option<String>,
}

/// A step waiting for a person.
#[derive(Debug)]
pub struct PersonQuestion {
    /// The step to show the person.
    pub case: StepCase,
    reply: oneshot::Sender<PersonAnswer>,
}

impl PersonQuestion {
    /// Sends the person's answer back to the judge loop.
    pub fn answer(self, answer: PersonAnswer) {
        // The loop may have stopped meanwhile; the step stays owed and is asked again later.
        let _ = self.reply.send(answer);
    }
}

/// The person judge; its questions arrive on the receiver [`PersonJudge::new`] returns.
pub struct PersonJudge {
    asks: mpsc::Sender<PersonQuestion>,
}

impl PersonJudge {
    /// At most `pending` questions wait unanswered at once.
    pub fn new(pending: usize) -> (Self, mpsc::Receiver<PersonQuestion>) {
        let (asks, questions) = mpsc::channel(pending.max(1));
        (Self { asks }, questions)
    }
}

impl Judge for PersonJudge {
    fn name(&self) -> &str {
        "person"
    }

    fn source(&self) -> VerdictSource {
        VerdictSource::Person
    }

    fn judge<'a>(&'a self, case: &'a StepCase) -> BoxFuture<'a, Result<Judgement>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.asks
                .send(PersonQuestion {
                    case: case.clone(),
                    reply,
                })
                .await
                .map_err(|_| JudgeError::Person("nobody is showing questions".into()))?;
            let answer = answer
                .await
                .map_err(|_| JudgeError::Person("the question was dismissed".into()))?;
            Ok(judgement(&answer))
        })
    }
}

fn judgement(answer: &PersonAnswer) -> Judgement {
    let score = if answer.approve { 1 } else { -1 };
    Judgement {
        source: VerdictSource::Person,
        score,
        mean: Some(f64::from(score)),
        hint: answer
            .hint
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned),
        votes: Vec::new(),
        correction: answer.correction.clone(),
    }
}

/// The verdict of a person's click in the timeline.
pub fn person_verdict(step: StepId, answer: &PersonAnswer) -> NewVerdict {
    judgement(answer).verdict(step, "person")
}
