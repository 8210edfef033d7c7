//! The tasks: seeded layouts, the expert's next action, the rule verifier, and the hindsight
//! hint ("the right action was ...") that a judge writes after seeing what happened.

use clawdesk_rng::SeededRng;

use crate::action::GymAction;
use crate::screen::{COLS, Cell, Colour, Screen, Widget, WidgetRole};

/// Words the type task asks for.
pub const WORDS: [&str; 6] = ["cat", "dog", "sun", "map", "box", "pen"];

/// Every name and number the gym's prompts and actions use (colours, words, widget roles,
/// the cells' centres on the 0-999 grid): a tokenizer can make each one token.
pub fn vocabulary() -> Vec<String> {
    let mut words: Vec<String> = crate::screen::Colour::ALL
        .iter()
        .map(|c| c.name().to_owned())
        .chain(WORDS.iter().map(|w| (*w).to_owned()))
        .chain(["button", "field", "menu"].map(String::from))
        .collect();
    for cell in crate::screen::Cell::all() {
        let (x, y) = cell.center_grid();
        words.extend([x.to_string(), y.to_string()]);
    }
    let mut seen = std::collections::HashSet::new();
    words.retain(|w| seen.insert(w.clone()));
    words
}

/// The kinds of task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Click the named coloured button among distractors.
    Click,
    /// Type a word into the focused field.
    Type,
    /// Open a menu, then choose an entry: two steps.
    Menu,
}

impl TaskKind {
    /// Every kind, in the order `click`, `type`, `menu`.
    pub const ALL: [TaskKind; 3] = [TaskKind::Click, TaskKind::Type, TaskKind::Menu];

    /// The lower-case name used on the command line and in serialised form.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Click => "click",
            TaskKind::Type => "type",
            TaskKind::Menu => "menu",
        }
    }

    /// The kind with this [`Self::name`], or `None` for any other text.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kinds a user chose, or every kind when they chose none.
    pub fn or_all(chosen: &[TaskKind]) -> Vec<TaskKind> {
        if chosen.is_empty() {
            Self::ALL.to_vec()
        } else {
            chosen.to_vec()
        }
    }
}

impl std::str::FromStr for TaskKind {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, String> {
        Self::parse(name)
            .ok_or_else(|| format!("unknown task kind {name:?}: use click, type or menu"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Goal {
    Click { target: usize },
    Type { word: &'static str },
    Menu { header: usize, item: Colour },
}

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// +1 when the step was the right one, -1 otherwise (the rule verifier's verdict).
    pub reward: f32,
    /// The episode is over (finished or failed).
    pub done: bool,
    /// The task is accomplished.
    pub success: bool,
    /// What the right action was and why: the hindsight hint for this step.
    pub hint: String,
}

/// One task instance, with its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    kind: TaskKind,
    seed: u64,
    instruction: String,
    screen: Screen,
    goal: Goal,
    /// For menus: each header's entries (cell, colour), shown when it opens.
    menus: Vec<Vec<Widget>>,
    steps: usize,
    done: bool,
    success: bool,
}

impl Task {
    /// The task of `kind` that `seed` lays out.
    pub fn generate(kind: TaskKind, seed: u64) -> Task {
        let mut rng = SeededRng::new(seed);
        let mut screen = Screen::default();
        let mut menus = Vec::new();
        let (goal, instruction) = match kind {
            TaskKind::Click => {
                let n = 2 + pick(&mut rng, 3);
                let cells = choose(&mut rng, &Cell::all(), n);
                let colours = choose(&mut rng, &Colour::ALL, n);
                for (cell, colour) in cells.into_iter().zip(colours) {
                    screen.widgets.push(Widget {
                        role: WidgetRole::Button,
                        colour,
                        cell,
                    });
                }
                let target = pick(&mut rng, n);
                let name = screen.widgets[target].colour.name();
                (Goal::Click { target }, format!("Click the {name} button."))
            }
            TaskKind::Type => {
                let n = 1 + pick(&mut rng, 2);
                let cells = choose(&mut rng, &Cell::all(), n + 1);
                let colours = choose(&mut rng, &Colour::ALL, n + 1);
                for (i, (cell, colour)) in cells.into_iter().zip(colours).enumerate() {
                    let role = if i == 0 {
                        WidgetRole::TextField
                    } else {
                        WidgetRole::Button
                    };
                    screen.widgets.push(Widget { role, colour, cell });
                }
                screen.typed = Some(String::new());
                let word = WORDS[pick(&mut rng, WORDS.len())];
                (Goal::Type { word }, format!("Type {word} in the field."))
            }
            TaskKind::Menu => {
                let n = 2 + pick(&mut rng, 3);
                let cols: Vec<u32> = choose(&mut rng, &(0..COLS).collect::<Vec<_>>(), n);
                let colours = choose(&mut rng, &Colour::ALL, n);
                for (col, colour) in cols.into_iter().zip(colours) {
                    screen.widgets.push(Widget {
                        role: WidgetRole::MenuHeader,
                        colour,
                        cell: Cell { col, row: 0 },
                    });
                    let m = 2 + pick(&mut rng, 3);
                    let item_cols = choose(&mut rng, &(0..COLS).collect::<Vec<_>>(), m);
                    let item_colours = choose(&mut rng, &Colour::ALL, m);
                    menus.push(
                        item_cols
                            .into_iter()
                            .zip(item_colours)
                            .map(|(col, colour)| Widget {
                                role: WidgetRole::MenuItem,
                                colour,
                                cell: Cell { col, row: 1 },
                            })
                            .collect(),
                    );
                }
                let header = pick(&mut rng, n);
                let items: &Vec<Widget> = &menus[header];
                let item = items[pick(&mut rng, items.len())].colour;
                let name = screen.widgets[header].colour.name();
                (
                    Goal::Menu { header, item },
                    format!("Open the {name} menu and choose {}.", item.name()),
                )
            }
        };
        Task {
            kind,
            seed,
            instruction,
            screen,
            goal,
            menus,
            steps: 0,
            done: false,
            success: false,
        }
    }

    /// Which kind of task this is.
    pub fn kind(&self) -> TaskKind {
        self.kind
    }
    /// The seed the task's layout is drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// What the user asks for, e.g. "Click the red button.".
    pub fn instruction(&self) -> &str {
        &self.instruction
    }
    /// The screen as it stands now, after the steps taken so far.
    pub fn screen(&self) -> &Screen {
        &self.screen
    }
    /// Whether the episode is over, by success or by a wrong step.
    pub fn is_done(&self) -> bool {
        self.done
    }
    /// Whether the task was accomplished.
    pub fn succeeded(&self) -> bool {
        self.success
    }
    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// A stable fingerprint of what the policy can see over the episode: the kind, the
    /// instruction, the widgets sorted by cell (not in the order they were drawn) and, for a
    /// menu, the entries of the one menu that opens. Two seeds that lay out the same screen
    /// and ask the same thing share it; [`crate::split`] does not use it (it splits by the
    /// pairings a task shows), but grouping rollouts by task does.
    pub fn signature(&self) -> u64 {
        let mut text = format!("{:?}|{}", self.kind, self.instruction);
        for w in self.visible_widgets() {
            text.push_str(&format!(
                "|{:?}:{:?}@{},{}",
                w.role, w.colour, w.cell.col, w.cell.row
            ));
        }
        fingerprint(&text)
    }

    /// Every widget the policy can be shown over the episode, sorted by role and cell: the
    /// first screen's and, for a menu, the entries of the menu the goal opens (a wrong click
    /// ends the episode, so no other menu is ever drawn).
    pub fn visible_widgets(&self) -> Vec<&Widget> {
        let opened = match &self.goal {
            Goal::Menu { header, .. } if self.screen.open_menu.is_none() => {
                self.menus.get(*header).map(Vec::as_slice)
            }
            _ => None,
        };
        let mut all: Vec<&Widget> = self
            .screen
            .widgets
            .iter()
            .chain(opened.unwrap_or_default())
            .collect();
        all.sort_by_key(|w| (w.cell.row, w.cell.col, w.role as u8, w.colour));
        all
    }

    /// The widgets the goal names: the button to click, the field to type into, the menu
    /// and its entry. Every other visible widget is a distractor.
    pub fn goal_widgets(&self) -> Vec<&Widget> {
        match &self.goal {
            Goal::Click { target } => vec![&self.screen.widgets[*target]],
            Goal::Type { .. } => self
                .screen
                .widgets
                .iter()
                .filter(|w| w.role == WidgetRole::TextField)
                .collect(),
            Goal::Menu { header, item } => {
                let mut out = vec![&self.screen.widgets[*header]];
                let entries = match self.screen.open_menu {
                    Some(_) => self.screen.widgets.as_slice(),
                    None => self.menus.get(*header).map_or(&[][..], Vec::as_slice),
                };
                out.extend(
                    entries
                        .iter()
                        .filter(|w| w.role == WidgetRole::MenuItem && w.colour == *item),
                );
                out
            }
        }
    }

    /// The word a type task asks for.
    pub fn word(&self) -> Option<&'static str> {
        match &self.goal {
            Goal::Type { word } => Some(word),
            _ => None,
        }
    }

    /// The right next action, while the episode runs.
    pub fn expert(&self) -> Option<GymAction> {
        if self.done {
            return None;
        }
        match &self.goal {
            Goal::Click { target } => Some(click(self.screen.widgets[*target].cell)),
            Goal::Type { word } => Some(GymAction::Type {
                text: (*word).to_string(),
            }),
            Goal::Menu { header, item } => match self.screen.open_menu {
                None => Some(click(self.screen.widgets[*header].cell)),
                Some(_) => self
                    .screen
                    .widgets
                    .iter()
                    .find(|w| w.role == WidgetRole::MenuItem && w.colour == *item)
                    .map(|w| click(w.cell)),
            },
        }
    }

    /// Plausible wrong next actions: the other widgets, the other words. An imperfect
    /// demonstrator picks among these.
    pub fn mistakes(&self) -> Vec<GymAction> {
        let Some(right) = self.expert() else {
            return Vec::new();
        };
        let mut out: Vec<GymAction> = match &self.goal {
            Goal::Type { word } => WORDS
                .iter()
                .filter(|w| *w != word)
                .map(|w| GymAction::Type {
                    text: (*w).to_string(),
                })
                .collect(),
            _ => self
                .screen
                .widgets
                .iter()
                .filter(|w| self.screen.open_menu.is_none() || w.role == WidgetRole::MenuItem)
                .map(|w| click(w.cell))
                .collect(),
        };
        out.retain(|a| !self.is_right(a, &right));
        out
    }

    fn is_right(&self, action: &GymAction, right: &GymAction) -> bool {
        match (action, right) {
            (GymAction::Click { x, y }, GymAction::Click { x: rx, y: ry }) => {
                Cell::at_grid(*x, *y).is_some() && Cell::at_grid(*x, *y) == Cell::at_grid(*rx, *ry)
            }
            (GymAction::Type { text }, GymAction::Type { text: right }) => text == right,
            _ => false,
        }
    }

    /// The elements a prompt lists, in reading order (top row first, left to right): each
    /// widget's accessible name and the centre of its bounds on the 0-999 grid, as the agent
    /// reads them from the accessibility tree.
    pub fn elements(&self) -> Vec<String> {
        let mut widgets: Vec<&Widget> = self.screen.widgets.iter().collect();
        widgets.sort_by_key(|w| (w.cell.row, w.cell.col));
        widgets
            .into_iter()
            .map(|w| {
                let (x, y) = w.cell.center_grid();
                format!("{} ({x},{y})", w.name())
            })
            .collect()
    }

    /// The element line (as [`Self::elements`] writes it) a click lands on: what a grounded
    /// reply quotes before its action, naming the element it acts on. `None` for typing and
    /// for a click on no widget.
    pub fn element_line(&self, action: &GymAction) -> Option<String> {
        let GymAction::Click { x, y } = action else {
            return None;
        };
        let (_, widget) = self.screen.widget_at(Cell::at_grid(*x, *y)?)?;
        let (cx, cy) = widget.cell.center_grid();
        Some(format!("{} ({cx},{cy})", widget.name()))
    }

    /// The most salient wrong action: a click on the first widget in reading order, the
    /// mistake a model biased toward the top-left of the screen makes. `None` when that click
    /// would be right.
    pub fn salient_mistake(&self) -> Option<GymAction> {
        let right = self.expert()?;
        let first = self
            .screen
            .widgets
            .iter()
            .min_by_key(|w| (w.cell.row, w.cell.col))?;
        let action = click(first.cell);
        (!self.is_right(&action, &right)).then_some(action)
    }

    /// The hint for the current step, naming the right action and its target.
    pub fn hint(&self) -> Option<String> {
        let right = self.expert()?;
        Some(match &right {
            GymAction::Click { x, y } => {
                let target = Cell::at_grid(*x, *y)
                    .and_then(|c| self.screen.widget_at(c))
                    .map(|(_, w)| w.name())
                    .unwrap_or_default();
                format!("The right action was {right}, on the {target}.")
            }
            GymAction::Type { .. } => format!("The right action was {right}."),
        })
    }

    /// Applies an action (`None`: the reply was not an action) and verifies it: the rule judge.
    /// A wrong step ends the episode; a done episode takes no more steps.
    pub fn step(&mut self, action: Option<&GymAction>) -> Option<StepOutcome> {
        let right = self.expert()?;
        let hint = self.hint().unwrap_or_default();
        self.steps += 1;
        let ok = action.is_some_and(|a| self.is_right(a, &right));
        if let Some(GymAction::Type { text }) = action
            && let Some(typed) = self.screen.typed.as_mut()
        {
            typed.push_str(text);
        }
        if !ok {
            self.done = true;
            return Some(StepOutcome {
                reward: -1.0,
                done: true,
                success: false,
                hint,
            });
        }
        match &self.goal {
            Goal::Menu { header, .. } if self.screen.open_menu.is_none() => {
                self.screen.open_menu = Some(*header);
                self.screen
                    .widgets
                    .extend(self.menus[*header].iter().cloned());
            }
            _ => {
                self.done = true;
                self.success = true;
            }
        }
        Some(StepOutcome {
            reward: 1.0,
            done: self.done,
            success: self.success,
            hint,
        })
    }
}

/// FNV-1a of a text: fixed across builds and platforms, unlike std's hasher, so splits and
/// cache keys stay put.
pub fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn click(cell: Cell) -> GymAction {
    let (x, y) = cell.center_grid();
    GymAction::Click { x, y }
}

fn pick(rng: &mut SeededRng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// `n` distinct elements of `from`, in random order (partial Fisher-Yates).
fn choose<T: Clone>(rng: &mut SeededRng, from: &[T], n: usize) -> Vec<T> {
    let mut pool = from.to_vec();
    let n = n.min(pool.len());
    for i in 0..n {
        let j = i + pick(rng, pool.len() - i);
        pool.swap(i, j);
    }
    pool.truncate(n);
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expert_solves_every_task_and_mistakes_fail() {
        for kind in TaskKind::ALL {
            for seed in 0..200 {
                let mut task = Task::generate(kind, seed);
                let mut wrong = task.clone();
                let mistakes = wrong.mistakes();
                assert!(!mistakes.is_empty(), "{kind:?} {seed}");
                let out = wrong.step(Some(&mistakes[0])).expect("a step");
                assert_eq!((out.reward, out.done, out.success), (-1.0, true, false));
                if let Some(salient) = task.salient_mistake() {
                    let out = task.clone().step(Some(&salient)).expect("a step");
                    assert_eq!(out.reward, -1.0, "the salient mistake is a mistake");
                }
                assert_eq!(task.elements().len(), task.screen().widgets.len());
                let mut steps = 0;
                while let Some(action) = task.expert() {
                    let out = task.step(Some(&action)).expect("a step");
                    assert_eq!(out.reward, 1.0);
                    steps += 1;
                }
                assert!(task.succeeded());
                assert_eq!(steps, if kind == TaskKind::Menu { 2 } else { 1 });
                assert!(task.step(None).is_none(), "a done task takes no step");
            }
        }
    }

    #[test]
    fn a_click_anywhere_on_the_target_counts() {
        let mut task = Task::generate(TaskKind::Click, 3);
        let Some(GymAction::Click { x, y }) = task.expert() else {
            panic!("a click task starts with a click");
        };
        let out = task.step(Some(&GymAction::Click {
            x: x - 100,
            y: y + 100,
        }));
        assert_eq!(out.map(|o| o.reward), Some(1.0));
    }

    #[test]
    fn an_unparsed_reply_is_a_wrong_step_with_a_hint() {
        let mut task = Task::generate(TaskKind::Menu, 9);
        let out = task.step(None).expect("a step");
        assert_eq!(out.reward, -1.0);
        assert!(
            out.hint.starts_with("The right action was click("),
            "{}",
            out.hint
        );
        assert!(out.hint.ends_with(" menu."), "{}", out.hint);
    }

    #[test]
    fn seeds_fix_the_layout() {
        for kind in TaskKind::ALL {
            let a = Task::generate(kind, 42);
            let b = Task::generate(kind, 42);
            assert_eq!(a.signature(), b.signature());
            assert_eq!(a.screen().render(), b.screen().render());
            assert_ne!(a.signature(), Task::generate(kind, 43).signature());
        }
    }
}
