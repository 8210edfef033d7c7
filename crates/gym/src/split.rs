//! Train and held-out splits by layout: a task is held out when its signature says so, so no
//! held-out layout (widgets, colours, goal) is ever trained on.

use clawdesk_rng::SeededRng;

use crate::task::{Task, TaskKind};

/// Which split a task belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Layouts the policy may be trained on: four in five.
    Train,
    /// Layouts kept for measuring only, never trained on: one in five.
    HeldOut,
}

impl Split {
    /// One layout in five is held out.
    pub fn of(task: &Task) -> Split {
        if task.signature().is_multiple_of(5) {
            Split::HeldOut
        } else {
            Split::Train
        }
    }
}

/// Draws a task of one of `kinds` in `split`.
///
/// # Panics
/// When `kinds` is empty.
pub fn sample_task(split: Split, kinds: &[TaskKind], rng: &mut SeededRng) -> Task {
    assert!(!kinds.is_empty(), "sample_task needs at least one kind");
    loop {
        let kind = kinds[(rng.next_u64() % kinds.len() as u64) as usize];
        let task = Task::generate(kind, rng.next_u64());
        if Split::of(&task) == split {
            return task;
        }
    }
}

/// A fixed evaluation set: `n` tasks of `split`, the same for every caller with `seed`.
pub fn evaluation_set(split: Split, kinds: &[TaskKind], n: usize, seed: u64) -> Vec<Task> {
    let mut rng = SeededRng::new(seed);
    (0..n)
        .map(|_| sample_task(split, kinds, &mut rng))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn splits_are_disjoint_and_roughly_one_in_five() {
        let mut rng = SeededRng::new(1);
        let train: HashSet<u64> = (0..2000)
            .map(|_| sample_task(Split::Train, &TaskKind::ALL, &mut rng).signature())
            .collect();
        let held: HashSet<u64> = evaluation_set(Split::HeldOut, &TaskKind::ALL, 500, 2)
            .iter()
            .map(Task::signature)
            .collect();
        assert!(train.is_disjoint(&held));
        let mut rng = SeededRng::new(3);
        let held_out = (0..5000)
            .filter(|_| {
                let kind = TaskKind::ALL[(rng.next_u64() % 3) as usize];
                Split::of(&Task::generate(kind, rng.next_u64())) == Split::HeldOut
            })
            .count();
        assert!((800..1200).contains(&held_out), "{held_out}");
    }
}
