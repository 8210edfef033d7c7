//! Train and held-out splits by what the policy sees: some pairings of a colour with a cell,
//! and of a word with the field's cell, are held out. A held-out task asks for one of them; a
//! train task never shows one, not even as a distractor. So the policy is measured on
//! combinations it has never seen (each colour, cell and word alone it has), and no held-out
//! screenshot and prompt is ever a train one, whatever seed drew it.
//!
//! A task that shows a held-out pairing without asking for it is in neither split.

use clawdesk_rng::SeededRng;

use crate::screen::{COLS, Cell, Colour, Widget};
use crate::task::{Task, TaskKind, WORDS};

/// Which split a task belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Tasks the policy may be trained on: they show no held-out pairing.
    Train,
    /// Tasks kept for measuring only: their goal is a held-out pairing.
    HeldOut,
}

impl Split {
    /// The split `task` is in, or `None` when it shows a held-out pairing it does not ask for
    /// on its first screen.
    ///
    /// What a task asks for on its first screen: the button to click (its colour in its cell),
    /// the word for the field (with the field's cell), the menu to open (its colour in its
    /// cell). A held-out task's every screen then shows a held-out pairing: a menu's second
    /// screen still shows its header. An entry of the menu is held out only under a held-out
    /// header, since the first screen, where the entry is not yet drawn, would be a train one.
    pub fn of(task: &Task) -> Option<Split> {
        let held = |w: &Widget| colour_cell_held_out(w.colour, w.cell);
        let goal = task.goal_widgets();
        let asked_held = match task.kind() {
            TaskKind::Click | TaskKind::Menu => goal.first().is_some_and(|w| held(w)),
            TaskKind::Type => task
                .word()
                .zip(goal.first())
                .is_some_and(|(word, field)| word_cell_held_out(word, field.cell)),
        };
        // The widgets a held-out task may show in a held-out pairing: its goal's. A type
        // task's field is held out by its word, so its colour must be a train one.
        let exempt: &[&Widget] = match task.kind() {
            TaskKind::Type => &[],
            TaskKind::Click | TaskKind::Menu => &goal,
        };
        let is_exempt = |w: &Widget| exempt.iter().any(|g| std::ptr::eq(*g, w));
        let shown = task.visible_widgets();
        if shown.iter().any(|w| !is_exempt(w) && held(w)) {
            return None;
        }
        if asked_held {
            Some(Split::HeldOut)
        } else if exempt.iter().any(|w| held(w)) {
            None
        } else {
            Some(Split::Train)
        }
    }
}

/// Whether the policy never sees `colour` in `cell` in training. The rule `(c + 3k) mod 5 = 0`
/// (colour index c, cell index k in reading order) holds out 10 of the 48 pairings, one or
/// two per colour and per cell, so every colour and every cell is still seen elsewhere.
pub fn colour_cell_held_out(colour: Colour, cell: Cell) -> bool {
    let c = Colour::ALL.iter().position(|&x| x == colour).unwrap_or(0);
    held_out_pairing(c, cell)
}

/// Whether the policy never sees a type task asking for `word` with the field in `cell`:
/// the same rule as [`colour_cell_held_out`], with the word's index for the colour's.
pub fn word_cell_held_out(word: &str, cell: Cell) -> bool {
    WORDS
        .iter()
        .position(|&w| w == word)
        .is_some_and(|w| held_out_pairing(w, cell))
}

fn held_out_pairing(index: usize, cell: Cell) -> bool {
    let k = (cell.row * COLS + cell.col) as usize;
    (index + 3 * k).is_multiple_of(5)
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
        if Split::of(&task) == Some(split) {
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
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::prompt::GymPrompts;

    /// What the policy is given at each step of the expert's path: the prompt's text and the
    /// screenshot's bytes.
    fn observations(task: &Task, prompts: &GymPrompts) -> Vec<(String, Vec<u8>)> {
        let mut task = task.clone();
        let mut out = Vec::new();
        while let Some(right) = task.expert() {
            let text = prompts
                .task(task.instruction(), &task.elements())
                .expect("the built-in prompt renders");
            out.push((text, task.screen().render().into_raw()));
            task.step(Some(&right));
        }
        out
    }

    /// Every held-out set the project measures on: the adapters' suite, `bench learn`'s and
    /// the warm start's for seeds 1-20, and `gym eval`'s default.
    fn held_out_sets() -> Vec<Task> {
        let mut seeds: Vec<u64> = vec![0x5C0_4E5, 1];
        seeds.extend((1..=20u64).map(|s| s ^ 0xE7A1));
        seeds.extend((1..=20u64).map(|s| s ^ 0x4845_4C44));
        seeds
            .into_iter()
            .flat_map(|seed| evaluation_set(Split::HeldOut, &TaskKind::ALL, 200, seed))
            .collect()
    }

    #[test]
    fn no_held_out_screen_and_prompt_is_ever_a_train_one() {
        let prompts = GymPrompts::built_in().expect("built-in prompt");
        let mut held: HashMap<String, HashSet<Vec<u8>>> = HashMap::new();
        for task in held_out_sets() {
            for (text, pixels) in observations(&task, &prompts) {
                held.entry(text).or_default().insert(pixels);
            }
        }
        let mut rng = SeededRng::new(0x7EA1);
        let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
        let (mut draws, mut repeats, mut leaks) = (0, 0, Vec::new());
        while draws < 100_000 {
            let task = sample_task(Split::Train, &TaskKind::ALL, &mut rng);
            draws += 1;
            for (text, pixels) in observations(&task, &prompts) {
                if held.get(&text).is_some_and(|p| p.contains(&pixels)) {
                    leaks.push(text.clone());
                }
                // The same comparison finds the many repeats within the train draws (the task
                // space is small), so finding no held-out one is not for want of looking.
                match seen.get(&text) {
                    Some(p) if *p == pixels => repeats += 1,
                    Some(_) => {}
                    None => {
                        seen.insert(text, pixels);
                    }
                }
            }
        }
        assert!(
            leaks.is_empty(),
            "{} train observations equal a held-out one, e.g.\n{}",
            leaks.len(),
            leaks[0]
        );
        assert!(repeats > 10_000, "only {repeats} repeats among train draws");
    }

    #[test]
    fn train_tasks_never_show_a_held_out_pairing_but_show_every_colour_cell_and_word() {
        let mut rng = SeededRng::new(5);
        let (mut colours, mut cells, mut words) = (HashSet::new(), HashSet::new(), HashSet::new());
        for _ in 0..5000 {
            let task = sample_task(Split::Train, &TaskKind::ALL, &mut rng);
            for w in task.visible_widgets() {
                assert!(!colour_cell_held_out(w.colour, w.cell), "{task:?}");
                colours.insert(w.colour);
                cells.insert(w.cell);
            }
            if let (Some(word), Some(field)) = (task.word(), task.goal_widgets().first()) {
                assert!(!word_cell_held_out(word, field.cell));
                words.insert(word);
            }
        }
        assert_eq!(colours.len(), Colour::ALL.len());
        assert_eq!(cells.len(), Cell::all().len());
        assert_eq!(words.len(), WORDS.len());
        for task in held_out_sets().iter().take(600) {
            let asked = task.goal_widgets()[0];
            let held = match task.word() {
                Some(word) => word_cell_held_out(word, asked.cell),
                None => colour_cell_held_out(asked.colour, asked.cell),
            };
            assert!(held, "{task:?}");
        }
    }

    #[test]
    fn about_one_usable_task_in_five_is_held_out_for_each_kind() {
        let mut rng = SeededRng::new(3);
        for kind in TaskKind::ALL {
            let splits: Vec<Option<Split>> = (0..5000)
                .map(|_| Split::of(&Task::generate(kind, rng.next_u64())))
                .collect();
            let held = splits
                .iter()
                .filter(|s| **s == Some(Split::HeldOut))
                .count();
            let usable = splits.iter().filter(|s| s.is_some()).count();
            let share = held as f64 / usable as f64;
            assert!((0.1..0.35).contains(&share), "{kind:?}: {share}");
            assert!(usable > 1000, "{kind:?}: only {usable} usable");
        }
    }

    #[test]
    fn the_rule_holds_out_ten_of_forty_eight_pairings_and_some_of_every_colour_and_cell() {
        let pairs: Vec<(Colour, Cell)> = Colour::ALL
            .iter()
            .flat_map(|&c| Cell::all().into_iter().map(move |k| (c, k)))
            .filter(|&(c, k)| colour_cell_held_out(c, k))
            .collect();
        assert_eq!(pairs.len(), 10);
        for colour in Colour::ALL {
            assert!(pairs.iter().any(|p| p.0 == colour), "{colour:?}");
        }
        for cell in Cell::all() {
            assert!(pairs.iter().any(|p| p.1 == cell), "{cell:?}");
        }
        assert!(word_cell_held_out("cat", Cell { col: 0, row: 0 }));
        assert!(!word_cell_held_out("dog", Cell { col: 0, row: 0 }));
    }
}
