//! Every action format against its own emitter (parse(emit(a)) = a over random representable
//! replies) and against a million mangled inputs each (no panic; whatever parses is valid).

use clawdesk_agent::{ActionFormat, AgentAction, Frame, Reply};
use clawdesk_desktop::{Action, MouseButton, NormPoint};

/// xorshift64*: a fixed, dependency-free stream so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const FRAME: Frame = Frame {
    image: (1288, 728),
    screen: (1920, 1080),
    pointer: Some(NormPoint { x: 0.5, y: 0.5 }),
};

/// The extent of a format's coordinates, as its docs say.
fn extent(format: ActionFormat) -> (u32, u32) {
    match format {
        ActionFormat::Qwen3Vl => (999, 999),
        ActionFormat::UiTars1000 | ActionFormat::Practice => (1000, 1000),
        ActionFormat::Qwen25Vl | ActionFormat::UiTarsPixels | ActionFormat::OpenCua => FRAME.image,
        ActionFormat::PyAutoGui | ActionFormat::Computer13 => FRAME.screen,
    }
}

fn point(rng: &mut Rng, format: ActionFormat) -> NormPoint {
    let (w, h) = extent(format);
    let x = rng.below(u64::from(w) + 1) as f64;
    let y = rng.below(u64::from(h) + 1) as f64;
    NormPoint::new(x / f64::from(w), y / f64::from(h))
}

const COMBOS: [&str; 8] = [
    "ctrl+c",
    "Return",
    "alt+F4",
    "ctrl+shift+t",
    "plus",
    "super",
    "Escape",
    "ctrl+plus",
];

fn text(rng: &mut Rng) -> String {
    let pieces = [
        "hello", " ", "it's", "\"q\"", "\\", "\n", "\t", "ünï", "✓", "{", "}", "(", ")", "'", ",",
        "=", "<", ">", "#", "12+7",
    ];
    (0..rng.below(6)).map(|_| *rng.pick(&pieces)).collect()
}

fn thought(rng: &mut Rng) -> Option<String> {
    let words = [
        "I", "will", "click", "the", "OK", "button", "now.", "then", "type", "ünï",
    ];
    if rng.chance(0.3) {
        return None;
    }
    let n = 1 + rng.below(8);
    Some(
        (0..n)
            .map(|_| *rng.pick(&words))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// One action the format can write, at random.
fn action(rng: &mut Rng, format: ActionFormat) -> Vec<AgentAction> {
    use ActionFormat::*;
    let ui_tars = matches!(format, UiTars1000 | UiTarsPixels);
    let qwen = matches!(format, Qwen3Vl | Qwen25Vl);
    let d = |a: Action| vec![AgentAction::from(a)];
    match rng.below(10) {
        0 => {
            let (button, count) = if ui_tars {
                *rng.pick(&[
                    (MouseButton::Left, 1),
                    (MouseButton::Left, 2),
                    (MouseButton::Right, 1),
                ])
            } else if qwen {
                *rng.pick(&[
                    (MouseButton::Left, 1),
                    (MouseButton::Right, 1),
                    (MouseButton::Middle, 1),
                    (MouseButton::Left, 2),
                    (MouseButton::Left, 3),
                ])
            } else {
                let b = *rng.pick(&[MouseButton::Left, MouseButton::Right, MouseButton::Middle]);
                (b, 1 + rng.below(3) as u8)
            };
            d(Action::Click {
                at: point(rng, format),
                button,
                count,
            })
        }
        1 if !ui_tars => d(Action::Move {
            at: point(rng, format),
        }),
        2 => {
            let button = if format == PyAutoGui {
                *rng.pick(&[MouseButton::Left, MouseButton::Right])
            } else {
                MouseButton::Left
            };
            d(Action::Drag {
                from: point(rng, format),
                to: point(rng, format),
                button,
            })
        }
        3 => {
            let n = if ui_tars { 5 } else { 1 + rng.below(20) as i32 };
            let n = if rng.chance(0.5) { n } else { -n };
            let (dx, dy) = if format == Computer13 {
                (rng.below(7) as i32 - 3, n)
            } else if rng.chance(0.5) {
                (0, n)
            } else {
                (n, 0)
            };
            let at = (format != Computer13 && rng.chance(0.5)).then(|| point(rng, format));
            d(Action::Scroll { at, dx, dy })
        }
        4 => d(Action::Type {
            text: text(rng),
            paste: false,
        }),
        5 => d(Action::Key {
            combo: rng.pick(&COMBOS).to_string(),
        }),
        6 => {
            let ms = match format {
                UiTars1000 | UiTarsPixels => 5000,
                Computer13 => 2000,
                _ => rng.below(60_001),
            };
            d(Action::Wait { ms })
        }
        7 if !matches!(format, PyAutoGui | Computer13 | OpenCua) => {
            vec![
                AgentAction::Answer {
                    text: format!("19{}", text(rng)),
                },
                AgentAction::Terminate { success: true },
            ]
        }
        8 if ui_tars => vec![AgentAction::CallUser],
        _ => vec![AgentAction::Terminate {
            success: ui_tars || rng.chance(0.5),
        }],
    }
}

fn reply(rng: &mut Rng, format: ActionFormat) -> Reply {
    let mut actions = Vec::new();
    for _ in 0..1 + rng.below(3) {
        actions.extend(action(rng, format));
    }
    Reply {
        thought: thought(rng),
        actions,
    }
}

#[test]
fn every_format_reads_back_what_it_writes() {
    for format in ActionFormat::ALL {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ format.name().len() as u64);
        for case in 0..5000 {
            let original = reply(&mut rng, format);
            let text = format
                .emit(&original, &FRAME)
                .unwrap_or_else(|e| panic!("{format} case {case}: emit {original:?}: {e}"));
            let parsed = format
                .parse(&text, &FRAME)
                .unwrap_or_else(|e| panic!("{format} case {case}: parse {text:?}: {e}"));
            let original = if format == ActionFormat::OpenCua {
                scroll_where_moved(&original)
            } else {
                original
            };
            assert_eq!(
                same_keys(&parsed),
                same_keys(&original),
                "{format} case {case}: {text}"
            );
        }
    }
}

/// A move then a scroll without a point is a scroll where the pointer was moved to: the same
/// on the screen, and how OpenCUA writes a scroll at a point (`moveTo`, then `scroll`).
fn scroll_where_moved(reply: &Reply) -> Reply {
    let mut actions: Vec<AgentAction> = Vec::new();
    for action in &reply.actions {
        if let AgentAction::Desktop {
            action: Action::Scroll { at: None, dx, dy },
        } = action
            && let Some(AgentAction::Desktop {
                action: Action::Move { at },
            }) = actions.last()
        {
            let at = Some(*at);
            let (dx, dy) = (*dx, *dy);
            actions.pop();
            actions.push(Action::Scroll { at, dx, dy }.into());
            continue;
        }
        actions.push(action.clone());
    }
    Reply {
        thought: reply.thought.clone(),
        actions,
    }
}

/// A reply with each key combination written as the keys it names: formats that write
/// pyautogui's key names (`enter`, `win`) read back the same keys under other names.
fn same_keys(reply: &Reply) -> Reply {
    let mut reply = reply.clone();
    for action in &mut reply.actions {
        if let AgentAction::Desktop {
            action: Action::Key { combo },
        } = action
        {
            let keys = clawdesk_desktop::KeyCombo::parse(combo)
                .unwrap_or_else(|e| panic!("{combo}: {e}"))
                .keys;
            *combo = format!("{keys:?}");
        }
    }
    reply
}

#[test]
fn formats_refuse_what_they_cannot_say() {
    let right_double = Reply {
        thought: None,
        actions: vec![
            Action::Click {
                at: NormPoint::new(0.5, 0.5),
                button: MouseButton::Right,
                count: 2,
            }
            .into(),
        ],
    };
    for format in [ActionFormat::Qwen3Vl, ActionFormat::UiTars1000] {
        assert!(format.emit(&right_double, &FRAME).is_err(), "{format}");
    }
    let nothing = Reply::default();
    for format in ActionFormat::ALL {
        assert!(format.emit(&nothing, &FRAME).is_err(), "{format}");
    }
}

/// Replies as the models write them, each with what it must read as.
#[test]
fn replies_as_models_write_them() {
    let half = NormPoint::new(0.5, 0.5);
    let click = |at: NormPoint| -> AgentAction {
        Action::Click {
            at,
            button: MouseButton::Left,
            count: 1,
        }
        .into()
    };
    let cases: Vec<(ActionFormat, &str, Vec<AgentAction>)> = vec![
        (
            ActionFormat::Qwen3Vl,
            "Action: Click OK.\n<tool_call>\n{\"name\": \"computer_use\", \"arguments\": {\"action\": \"left_click\", \"coordinate\": [999, 0]}}\n</tool_call>",
            vec![click(NormPoint::new(1.0, 0.0))],
        ),
        (
            ActionFormat::Qwen3Vl,
            // Arguments as a JSON string, closing tag lost to the token limit.
            "<tool_call>{\"name\": \"computer_use\", \"arguments\": \"{\\\"action\\\": \\\"key\\\", \\\"keys\\\": [\\\"ctrl\\\", \\\"s\\\"]}\"}",
            vec![
                Action::Key {
                    combo: "ctrl+s".into(),
                }
                .into(),
            ],
        ),
        (
            ActionFormat::UiTars1000,
            "Thought: The field.\nAction: click(start_box='<|box_start|>(500,500)<|box_end|>')",
            vec![click(half)],
        ),
        (
            ActionFormat::UiTarsPixels,
            "Action: click(start_box='(600,300,688,428)')",
            vec![click(NormPoint::new(644.0 / 1288.0, 364.0 / 728.0))],
        ),
        (
            ActionFormat::UiTars1000,
            "Action: click(point='<point>500 500</point>')",
            vec![click(half)],
        ),
        (
            ActionFormat::PyAutoGui,
            "```python\nimport pyautogui\npyautogui.click(960, 540)\n```",
            vec![click(half)],
        ),
        (
            ActionFormat::PyAutoGui,
            "pyautogui.click(x=960, y=540, clicks=2); pyautogui.hotkey('ctrl', 'a')",
            vec![
                Action::Click {
                    at: half,
                    button: MouseButton::Left,
                    count: 2,
                }
                .into(),
                Action::Key {
                    combo: "ctrl+a".into(),
                }
                .into(),
            ],
        ),
        (
            ActionFormat::PyAutoGui,
            "DONE",
            vec![AgentAction::Terminate { success: true }],
        ),
        (
            ActionFormat::Computer13,
            "{\"action_type\": \"CLICK\", \"parameters\": {\"x\": 960, \"y\": 540}}",
            vec![click(half)],
        ),
        (
            ActionFormat::Computer13,
            "FAIL",
            vec![AgentAction::Terminate { success: false }],
        ),
    ];
    for (format, text, want) in cases {
        let got = format
            .parse(text, &FRAME)
            .unwrap_or_else(|e| panic!("{format}: {text:?}: {e}"));
        assert_eq!(got.actions, want, "{format}: {text:?}");
    }
}

#[test]
fn broken_replies_are_errors() {
    let cases: Vec<(ActionFormat, &str)> = vec![
        (ActionFormat::Qwen3Vl, "I would click OK."),
        (
            ActionFormat::Qwen3Vl,
            "<tool_call>{\"name\": \"computer_use\"</tool_call>",
        ),
        (
            ActionFormat::Qwen3Vl,
            "<tool_call>{\"name\": \"computer_use\", \"arguments\": {\"action\": \"left_click\", \"coordinate\": [1000, 5]}}</tool_call>",
        ),
        (
            ActionFormat::Qwen3Vl,
            "<tool_call>{\"name\": \"computer_use\", \"arguments\": {\"action\": \"key\", \"keys\": [\"hyper\"]}}</tool_call>",
        ),
        (ActionFormat::UiTars1000, "Thought: nothing to do"),
        (
            ActionFormat::UiTars1000,
            "Action: click(start_box='(1,2,3)')",
        ),
        (
            ActionFormat::PyAutoGui,
            "```python\nos.system('rm -rf /')\n```",
        ),
        (ActionFormat::PyAutoGui, "pyautogui.mouseDown()"),
        (
            ActionFormat::Computer13,
            "{\"action_type\": \"MOUSE_DOWN\"}",
        ),
        (ActionFormat::Computer13, "no json here"),
    ];
    for (format, text) in cases {
        assert!(format.parse(text, &FRAME).is_err(), "{format}: {text:?}");
    }
}

const TOKENS: [&str; 40] = [
    "<tool_call>",
    "</tool_call>",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "(",
    ")",
    ",",
    ":",
    "=",
    "\\",
    "\n",
    ";",
    "#",
    "Action:",
    "Thought:",
    "```",
    "```python\n",
    "```json\n",
    "-1e309",
    "1e308",
    "99999999999999999999",
    "NaN",
    "-0",
    "é",
    "✓",
    "\u{0}",
    "start_box=",
    "'(1,2)'",
    "pyautogui.dragTo(",
    "action_type",
    "\"CLICK\"",
    "\"parameters\"",
    "DONE",
    "left_click_drag",
    "<|box_start|>",
    "\"coordinate\": [",
];

fn mangle(rng: &mut Rng, seed: &str) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let len = chars.len() as u64;
        let at = rng.below(len + 1) as usize;
        match rng.below(6) {
            0 if !chars.is_empty() => {
                let end = (at + 1 + rng.below(8) as usize).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            1 => {
                let token: Vec<char> = rng.pick(&TOKENS).chars().collect();
                chars.splice(at..at, token);
            }
            2 if at < chars.len() => {
                chars[at] = char::from_u32(rng.below(0x3000) as u32).unwrap_or('?');
            }
            3 => chars.truncate(at),
            4 if !chars.is_empty() => {
                let from = rng.below(len) as usize;
                let end = (from + rng.below(16) as usize).min(chars.len());
                let piece: Vec<char> = chars[from..end].to_vec();
                chars.splice(at..at, piece);
            }
            _ => {
                let byte = (rng.below(96) + 32) as u8 as char;
                chars.insert(at, byte);
            }
        }
    }
    chars.into_iter().collect()
}

fn fuzz(format: ActionFormat) {
    const INPUTS: usize = 1_000_000;
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D ^ ((format as u64 + 1) * 0x1000_0001));
    let seeds: Vec<String> = (0..256)
        .filter_map(|_| format.emit(&reply(&mut rng, format), &FRAME).ok())
        .collect();
    let frames = [
        FRAME,
        Frame {
            pointer: None,
            ..FRAME
        },
        Frame {
            image: (0, 0),
            screen: (0, 0),
            pointer: None,
        },
    ];
    let mut parsed = 0usize;
    for i in 0..INPUTS {
        let seed = &seeds[i % seeds.len()];
        let input = if rng.chance(0.05) {
            (0..rng.below(64))
                .map(|_| char::from_u32(rng.below(0x250) as u32).unwrap_or(' '))
                .collect()
        } else {
            mangle(&mut rng, seed)
        };
        let frame = &frames[i % frames.len()];
        if let Ok(reply) = format.parse(&input, frame) {
            parsed += 1;
            assert!(!reply.actions.is_empty(), "{format}: {input:?}");
            for action in &reply.actions {
                if let AgentAction::Desktop { action } = action {
                    assert!(
                        action.validate().is_ok(),
                        "{format}: {input:?} gave {action:?}"
                    );
                    for p in action.points() {
                        let ok = (0.0..=1.0).contains(&p.x) && (0.0..=1.0).contains(&p.y);
                        assert!(ok, "{format}: {input:?} gave a point off the surface {p:?}");
                    }
                }
            }
            // Whatever parses can be written back or is refused, never a panic.
            let _ = format.emit(&reply, frame);
        }
    }
    // The mangling keeps many inputs valid; a parser that refused everything would pass the
    // no-panic checks vacuously.
    assert!(
        parsed > INPUTS / 50,
        "{format}: only {parsed} of {INPUTS} inputs parsed"
    );
}

#[test]
fn fuzz_qwen3_vl() {
    fuzz(ActionFormat::Qwen3Vl);
}
#[test]
fn fuzz_qwen25_vl() {
    fuzz(ActionFormat::Qwen25Vl);
}
#[test]
fn fuzz_ui_tars_1000() {
    fuzz(ActionFormat::UiTars1000);
}
#[test]
fn fuzz_ui_tars_pixels() {
    fuzz(ActionFormat::UiTarsPixels);
}
#[test]
fn fuzz_opencua() {
    fuzz(ActionFormat::OpenCua);
}

#[test]
fn fuzz_pyautogui() {
    fuzz(ActionFormat::PyAutoGui);
}
#[test]
fn fuzz_computer13() {
    fuzz(ActionFormat::Computer13);
}
