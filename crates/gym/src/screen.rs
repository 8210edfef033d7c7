//! What a gym screen holds and how it looks: widgets on a grid of 32-pixel cells (one cell is
//! one merged vision token of Qwen3-VL at patch 16, merge 2), drawn as pixels and described as
//! an accesskit tree, as a real app would be seen through a screenshot and AT-SPI.

use accesskit::{Node, NodeId, Rect, Role, TreeInfo, TreeUpdate};
use clawdesk_desktop::observe::{AccessTree, AppRef};
use image::{Rgb, RgbImage};

/// Cell size in pixels.
pub const CELL: u32 = 32;
/// Grid columns.
pub const COLS: u32 = 4;
/// Grid rows; a menu task puts its menu bar in row 0 and the open menu's entries in row 1.
pub const ROWS: u32 = 2;
/// Screen width in pixels.
pub const WIDTH: u32 = CELL * COLS;
/// Screen height in pixels.
pub const HEIGHT: u32 = CELL * ROWS;

const BACKGROUND: Rgb<u8> = Rgb([228, 228, 228]);
const INK: Rgb<u8> = Rgb([24, 24, 24]);
const PAPER: Rgb<u8> = Rgb([255, 255, 255]);

/// A widget colour, which is also its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Colour {
    /// Drawn as RGB (220, 40, 40).
    Red,
    /// Drawn as RGB (40, 170, 60).
    Green,
    /// Drawn as RGB (40, 80, 220).
    Blue,
    /// Drawn as RGB (235, 210, 40).
    Yellow,
    /// Drawn as RGB (140, 60, 180).
    Purple,
    /// Drawn as RGB (245, 140, 30).
    Orange,
}

impl Colour {
    /// Every colour, in a fixed order that seeded layouts depend on.
    pub const ALL: [Colour; 6] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
        Colour::Orange,
    ];

    /// The lower-case word prompts, instructions and accessible names use.
    pub fn name(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
            Colour::Orange => "orange",
        }
    }

    fn rgb(self) -> Rgb<u8> {
        match self {
            Colour::Red => Rgb([220, 40, 40]),
            Colour::Green => Rgb([40, 170, 60]),
            Colour::Blue => Rgb([40, 80, 220]),
            Colour::Yellow => Rgb([235, 210, 40]),
            Colour::Purple => Rgb([140, 60, 180]),
            Colour::Orange => Rgb([245, 140, 30]),
        }
    }
}

/// A grid cell: column, row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    /// Column, from 0 at the left to `COLS - 1`.
    pub col: u32,
    /// Row, from 0 at the top to `ROWS - 1`.
    pub row: u32,
}

impl Cell {
    /// Every cell, row by row.
    pub fn all() -> Vec<Cell> {
        (0..ROWS)
            .flat_map(|row| (0..COLS).map(move |col| Cell { col, row }))
            .collect()
    }

    /// The cell's centre on the 0-999 grid.
    pub fn center_grid(self) -> (u32, u32) {
        let x = (2 * self.col + 1) * 1000 / (2 * COLS);
        let y = (2 * self.row + 1) * 1000 / (2 * ROWS);
        (x, y)
    }

    /// The cell under a point of the 0-999 grid.
    pub fn at_grid(x: u32, y: u32) -> Option<Cell> {
        let px = x * WIDTH / 1000;
        let py = y * HEIGHT / 1000;
        (px < WIDTH && py < HEIGHT).then_some(Cell {
            col: px / CELL,
            row: py / CELL,
        })
    }

    fn rect(self) -> Rect {
        let (x, y) = (f64::from(self.col * CELL), f64::from(self.row * CELL));
        Rect::new(x, y, x + f64::from(CELL), y + f64::from(CELL))
    }
}

/// What a widget is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WidgetRole {
    /// A button, clicked to act.
    Button,
    /// A text field; it has the focus, so typing goes into it.
    TextField,
    /// A menu title in the menu bar (row 0).
    MenuHeader,
    /// An entry of the open menu.
    MenuItem,
}

/// One widget on the screen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Widget {
    /// What kind of widget it is.
    pub role: WidgetRole,
    /// Its colour, which names it.
    pub colour: Colour,
    /// The grid cell it fills.
    pub cell: Cell,
}

impl Widget {
    /// The accessible name: "red button", "blue menu", "green".
    pub fn name(&self) -> String {
        match self.role {
            WidgetRole::Button => format!("{} button", self.colour.name()),
            WidgetRole::TextField => format!("{} field", self.colour.name()),
            WidgetRole::MenuHeader => format!("{} menu", self.colour.name()),
            WidgetRole::MenuItem => self.colour.name().to_string(),
        }
    }
}

/// A screen: its widgets, what was typed, and which menu is open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Screen {
    /// Every widget shown, one per cell at most (an open menu's entries are appended).
    pub widgets: Vec<Widget>,
    /// Text in the focused field, when there is one.
    pub typed: Option<String>,
    /// Index (into `widgets`) of the open menu's header.
    pub open_menu: Option<usize>,
}

impl Screen {
    /// The widget in a cell.
    pub fn widget_at(&self, cell: Cell) -> Option<(usize, &Widget)> {
        self.widgets
            .iter()
            .enumerate()
            .find(|(_, w)| w.cell == cell)
    }

    /// The screenshot.
    pub fn render(&self) -> RgbImage {
        let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, BACKGROUND);
        for (i, w) in self.widgets.iter().enumerate() {
            let (x0, y0) = (w.cell.col * CELL, w.cell.row * CELL);
            match w.role {
                WidgetRole::Button => {
                    fill(&mut img, x0 + 3, y0 + 3, CELL - 6, CELL - 6, INK);
                    fill(&mut img, x0 + 4, y0 + 4, CELL - 8, CELL - 8, w.colour.rgb());
                }
                WidgetRole::TextField => {
                    fill(
                        &mut img,
                        x0 + 2,
                        y0 + 8,
                        CELL - 4,
                        CELL - 16,
                        w.colour.rgb(),
                    );
                    fill(&mut img, x0 + 4, y0 + 10, CELL - 8, CELL - 20, PAPER);
                    let typed = self.typed.as_deref().unwrap_or("");
                    // One dark bar per typed character, then the caret.
                    let mut x = x0 + 6;
                    for _ in typed.chars().take(5) {
                        fill(&mut img, x, y0 + 13, 3, 6, INK);
                        x += 4;
                    }
                    fill(&mut img, x, y0 + 11, 1, 10, INK);
                }
                WidgetRole::MenuHeader => {
                    let open = self.open_menu == Some(i);
                    fill(
                        &mut img,
                        x0 + 1,
                        y0 + 6,
                        CELL - 2,
                        CELL - 12,
                        w.colour.rgb(),
                    );
                    if open {
                        fill(&mut img, x0 + 1, y0 + CELL - 6, CELL - 2, 5, INK);
                    }
                }
                WidgetRole::MenuItem => {
                    fill(&mut img, x0, y0, CELL, CELL, PAPER);
                    fill(
                        &mut img,
                        x0 + 5,
                        y0 + 10,
                        CELL - 10,
                        CELL - 20,
                        w.colour.rgb(),
                    );
                }
            }
        }
        img
    }

    /// The accessibility tree, in screen pixels (the screenshot is the whole screen).
    pub fn tree(&self) -> AccessTree {
        let mut window = Node::new(Role::Window);
        window.set_label("ClawDesk gym");
        window.set_bounds(Rect::new(0.0, 0.0, f64::from(WIDTH), f64::from(HEIGHT)));
        let mut nodes = Vec::with_capacity(self.widgets.len() + 1);
        let mut focus = NodeId(0);
        for (i, w) in self.widgets.iter().enumerate() {
            let id = NodeId(i as u64 + 1);
            window.push_child(id);
            let role = match w.role {
                WidgetRole::Button => Role::Button,
                WidgetRole::TextField => Role::TextInput,
                WidgetRole::MenuHeader | WidgetRole::MenuItem => Role::MenuItem,
            };
            let mut node = Node::new(role);
            node.set_label(w.name());
            node.set_bounds(w.cell.rect());
            node.add_action(accesskit::Action::Click);
            if w.role == WidgetRole::TextField {
                node.set_value(self.typed.clone().unwrap_or_default());
                focus = id;
            }
            if w.role == WidgetRole::MenuHeader {
                node.set_expanded(self.open_menu == Some(i));
            }
            nodes.push((id, node));
        }
        nodes.insert(0, (NodeId(0), window));
        let update = TreeUpdate {
            nodes,
            tree: Some(TreeInfo::new(NodeId(0))),
            tree_id: accesskit::TreeId::ROOT,
            focus,
        };
        AccessTree::new(
            AppRef {
                name: "clawdesk-gym".into(),
                bus_name: String::new(),
                pid: None,
            },
            update,
            None,
            0.0,
        )
    }
}

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, colour: Rgb<u8>) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, colour);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_centres_land_in_their_cells() {
        for cell in Cell::all() {
            let (x, y) = cell.center_grid();
            assert_eq!(Cell::at_grid(x, y), Some(cell));
        }
        assert_eq!(Cell::at_grid(0, 0), Some(Cell { col: 0, row: 0 }));
        assert_eq!(Cell::at_grid(999, 999), Some(Cell { col: 3, row: 1 }));
    }

    #[test]
    fn the_tree_names_what_the_screenshot_shows() {
        let screen = Screen {
            widgets: vec![
                Widget {
                    role: WidgetRole::Button,
                    colour: Colour::Red,
                    cell: Cell { col: 1, row: 0 },
                },
                Widget {
                    role: WidgetRole::Button,
                    colour: Colour::Blue,
                    cell: Cell { col: 2, row: 1 },
                },
            ],
            typed: None,
            open_menu: None,
        };
        let img = screen.render();
        assert_eq!(img.get_pixel(48, 16), &Colour::Red.rgb());
        assert_eq!(img.get_pixel(80, 48), &Colour::Blue.rgb());
        assert_eq!(img.get_pixel(16, 16), &BACKGROUND);
        let tree = screen.tree();
        let red = tree.find(Some(Role::Button), "red button");
        assert_eq!(red.len(), 1);
        assert_eq!(red[0].center(), Some((48.0, 16.0)));
        let hit = tree
            .element_at(80.0, 48.0)
            .expect("an element under the blue button");
        assert_eq!(hit.name, "blue button");
    }
}
