//! An accessibility-tree snapshot in accesskit's data model, with the reads the agent needs:
//! a linearised text form for prompts, hit testing, and search by role and name.

use std::collections::HashMap;
use std::fmt::Write as _;

use accesskit::{Node, NodeId, Rect, Role, Toggled, TreeUpdate};
use serde::{Deserialize, Serialize};

/// Which app a tree belongs to, as the accessibility bus knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRef {
    /// The application's accessible name (`mousepad`, `gnome-calculator`).
    pub name: String,
    /// Its unique name on the accessibility bus.
    pub bus_name: String,
    /// Its process id, as the bus daemon reports it; `None` when it would not say.
    pub pid: Option<u32>,
}

/// Why a walk stopped before it had seen every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Truncation {
    /// The node cap was reached.
    NodeCap {
        /// The cap, in nodes.
        cap: usize,
    },
    /// The time limit ran out.
    TimeLimit {
        /// The limit, in milliseconds.
        limit_ms: u64,
    },
}

/// A snapshot of one app's accessibility tree. Node ids are assigned in walk order (the root
/// is 0) and are stable within the snapshot only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTree {
    /// The app the tree was read from.
    pub app: AppRef,
    /// Every node read, as one full accesskit update whose focus is the focused node.
    pub update: TreeUpdate,
    /// Why the walk stopped early; `None` when the tree is whole.
    pub truncated: Option<Truncation>,
    /// How long the walk took, in milliseconds.
    pub walk_ms: f64,
    /// The bounds are relative to the app's window, not the screen (GTK 4 reports them so),
    /// until [`Self::shift_bounds`] places them.
    #[serde(default)]
    pub window_relative: bool,
    #[serde(skip)]
    index: HashMap<NodeId, usize>,
}

/// An element as the agent and the guard see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Element {
    /// The node's id in this snapshot (walk order, the root 0).
    pub id: u64,
    /// What kind of element it is, in accesskit's terms.
    pub role: Role,
    /// Its accessible name; empty when it has none.
    pub name: String,
    /// Its text or current value, if it has one.
    pub value: Option<String>,
    /// Screen pixels: x, y, width, height.
    pub bounds: Option<(f64, f64, f64, f64)>,
    /// Whether it has keyboard focus (never true of the root).
    pub focused: bool,
    /// Whether it takes input (not greyed out).
    pub enabled: bool,
    /// Whether its text or value can be changed.
    pub editable: bool,
    /// Whether it is a password field; its value is never shown.
    pub password: bool,
    /// Whether it is checked or toggled on.
    pub checked: bool,
    /// Whether it is showing on the screen.
    pub visible: bool,
}

impl Element {
    /// The centre of the element's bounds in screen pixels.
    pub fn center(&self) -> Option<(f64, f64)> {
        self.bounds.map(|(x, y, w, h)| (x + w / 2.0, y + h / 2.0))
    }
}

impl AccessTree {
    /// Wraps a full tree update (every node present) as a snapshot.
    pub fn new(
        app: AppRef,
        update: TreeUpdate,
        truncated: Option<Truncation>,
        walk_ms: f64,
    ) -> Self {
        let mut tree = AccessTree {
            app,
            update,
            truncated,
            walk_ms,
            window_relative: false,
            index: HashMap::new(),
        };
        tree.reindex();
        tree
    }

    /// Moves every node's bounds by (dx, dy) and marks them as screen pixels: for a
    /// window-relative tree once its window's place on the screen is known.
    pub fn shift_bounds(&mut self, dx: f64, dy: f64) {
        for (_, node) in &mut self.update.nodes {
            if let Some(r) = node.bounds() {
                node.set_bounds(accesskit::Rect {
                    x0: r.x0 + dx,
                    y0: r.y0 + dy,
                    x1: r.x1 + dx,
                    y1: r.y1 + dy,
                });
            }
        }
        self.window_relative = false;
    }

    /// The size of the first top-level element with bounds (the app's window as it reports
    /// itself).
    pub fn window_size(&self) -> Option<(f64, f64)> {
        let root = self.node(self.root()?)?;
        root.children()
            .iter()
            .filter_map(|id| self.node(*id)?.bounds())
            .map(|r| (r.x1 - r.x0, r.y1 - r.y0))
            .next()
    }

    /// Rebuilds the id index (after deserialising).
    pub fn reindex(&mut self) {
        self.index = self
            .update
            .nodes
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i))
            .collect();
    }

    /// How many nodes the snapshot holds.
    pub fn len(&self) -> usize {
        self.update.nodes.len()
    }

    /// Whether the snapshot holds no node at all.
    pub fn is_empty(&self) -> bool {
        self.update.nodes.is_empty()
    }

    /// The root node's id; `None` when the update carries no tree information.
    pub fn root(&self) -> Option<NodeId> {
        self.update.tree.as_ref().map(|t| t.root)
    }

    /// The accesskit node with this id, if the snapshot has it.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.index.get(&id).map(|&i| &self.update.nodes[i].1)
    }

    /// The element view of a node.
    pub fn element(&self, id: NodeId) -> Option<Element> {
        let node = self.node(id)?;
        let role = node.role();
        let password = role == Role::PasswordInput;
        let text_role = matches!(
            role,
            Role::TextInput | Role::MultilineTextInput | Role::PasswordInput | Role::SearchInput
        );
        Some(Element {
            id: id.0,
            role,
            name: node.label().unwrap_or_default().to_owned(),
            value: node.value().map(str::to_owned),
            bounds: node.bounds().map(|r| (r.x0, r.y0, r.width(), r.height())),
            focused: self.update.focus == id && self.root() != Some(id),
            enabled: !node.is_disabled(),
            editable: (text_role && !node.is_read_only())
                || node.supports_action(accesskit::Action::SetValue),
            password,
            checked: node.toggled() == Some(Toggled::True),
            visible: !node.is_hidden(),
        })
    }

    /// Every node in depth-first order with its depth.
    pub fn walk(&self) -> Vec<(NodeId, usize)> {
        let mut out = Vec::with_capacity(self.len());
        let Some(root) = self.root() else { return out };
        let mut stack = vec![(root, 0usize)];
        while let Some((id, depth)) = stack.pop() {
            let Some(node) = self.node(id) else { continue };
            out.push((id, depth));
            for child in node.children().iter().rev() {
                stack.push((*child, depth + 1));
            }
        }
        out
    }

    /// Visible elements in depth-first order.
    pub fn elements(&self) -> Vec<Element> {
        self.walk()
            .into_iter()
            .filter_map(|(id, _)| self.element(id))
            .filter(|e| e.visible)
            .collect()
    }

    /// The element with keyboard focus, if any.
    pub fn focused(&self) -> Option<Element> {
        self.element(self.update.focus).filter(|e| e.focused)
    }

    /// The smallest visible element whose bounds contain the screen point: what a click there
    /// would most likely hit.
    pub fn element_at(&self, x: f64, y: f64) -> Option<Element> {
        self.elements()
            .into_iter()
            .filter(|e| {
                e.bounds.is_some_and(|(bx, by, w, h)| {
                    w > 0.0 && h > 0.0 && x >= bx && y >= by && x < bx + w && y < by + h
                })
            })
            .min_by(|a, b| {
                let area = |e: &Element| e.bounds.map(|(_, _, w, h)| w * h).unwrap_or(f64::MAX);
                area(a).total_cmp(&area(b))
            })
    }

    /// Visible elements with this role (any role when `None`) whose name equals `name`,
    /// ignoring case.
    pub fn find(&self, role: Option<Role>, name: &str) -> Vec<Element> {
        self.elements()
            .into_iter()
            .filter(|e| role.is_none_or(|r| e.role == r) && e.name.eq_ignore_ascii_case(name))
            .collect()
    }

    /// One line per visible node with bounds: `[id] role "name" value="…" (states) @x,y wxh`,
    /// indented by depth. The form the agent's prompt and the judge read.
    pub fn linearise(&self) -> String {
        let mut out = String::new();
        for (id, depth) in self.walk() {
            let Some(e) = self.element(id) else { continue };
            let Some((x, y, w, h)) = e.bounds else {
                continue;
            };
            if !e.visible || w <= 0.0 || h <= 0.0 {
                continue;
            }
            let _ = write!(
                out,
                "{:indent$}[{}] {}",
                "",
                e.id,
                role_name(e.role),
                indent = depth.min(12) * 2
            );
            if !e.name.is_empty() {
                let _ = write!(out, " {:?}", clip(&e.name, 80));
            }
            if let Some(v) = e.value.as_deref().filter(|v| !v.is_empty()) {
                if e.password {
                    out.push_str(" value=<hidden>");
                } else {
                    let _ = write!(out, " value={:?}", clip(v, 200));
                }
            }
            let states: Vec<&str> = [
                (e.focused, "focused"),
                (!e.enabled, "disabled"),
                (e.editable, "editable"),
                (e.checked, "checked"),
            ]
            .into_iter()
            .filter_map(|(on, s)| on.then_some(s))
            .collect();
            if !states.is_empty() {
                let _ = write!(out, " ({})", states.join(", "));
            }
            let _ = writeln!(
                out,
                " @{},{} {}x{}",
                x.round(),
                y.round(),
                w.round(),
                h.round()
            );
        }
        out
    }
}

/// accesskit's role as a short lowercase word (`button`, `text_input`).
pub fn role_name(role: Role) -> String {
    let debug = format!("{role:?}");
    let mut out = String::with_capacity(debug.len() + 4);
    for (i, c) in debug.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Builds a rectangle from AT-SPI extents, rejecting the sentinels off-screen nodes report.
pub(crate) fn rect_from_extents(x: i32, y: i32, w: i32, h: i32) -> Option<Rect> {
    if x == i32::MIN || y == i32::MIN || w <= 0 || h <= 0 || w == i32::MAX || h == i32::MAX {
        return None;
    }
    let (x, y) = (f64::from(x), f64::from(y));
    Some(Rect::new(x, y, x + f64::from(w), y + f64::from(h)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use accesskit::TreeInfo;

    fn sample() -> AccessTree {
        let mut window = Node::new(Role::Window);
        window.set_label("Calc");
        window.set_bounds(Rect::new(0.0, 0.0, 400.0, 300.0));
        window.set_children(vec![NodeId(1), NodeId(2), NodeId(3)]);
        let mut seven = Node::new(Role::Button);
        seven.set_label("7");
        seven.set_bounds(Rect::new(10.0, 100.0, 60.0, 140.0));
        let mut entry = Node::new(Role::PasswordInput);
        entry.set_label("Password");
        entry.set_value("secret");
        entry.set_bounds(Rect::new(10.0, 10.0, 390.0, 40.0));
        let mut hidden = Node::new(Role::Button);
        hidden.set_label("7");
        hidden.set_hidden();
        hidden.set_bounds(Rect::new(10.0, 100.0, 20.0, 110.0));
        let update = TreeUpdate {
            nodes: vec![
                (NodeId(0), window),
                (NodeId(1), seven),
                (NodeId(2), entry),
                (NodeId(3), hidden),
            ],
            tree: Some(TreeInfo::new(NodeId(0))),
            tree_id: accesskit::TreeId::ROOT,
            focus: NodeId(2),
        };
        let app = AppRef {
            name: "calc".into(),
            bus_name: ":1.2".into(),
            pid: None,
        };
        AccessTree::new(app, update, None, 1.0)
    }

    #[test]
    fn hit_test_picks_the_smallest_visible_element() {
        let t = sample();
        assert_eq!(t.element_at(30.0, 120.0).unwrap().name, "7");
        assert_eq!(t.element_at(30.0, 120.0).unwrap().id, 1);
        assert_eq!(t.element_at(300.0, 200.0).unwrap().role, Role::Window);
        assert!(t.element_at(500.0, 10.0).is_none());
    }

    #[test]
    fn find_skips_hidden_nodes() {
        let t = sample();
        let found = t.find(Some(Role::Button), "7");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].center(), Some((35.0, 120.0)));
    }

    #[test]
    fn linearised_form_hides_passwords_and_marks_focus() {
        let t = sample();
        let text = t.linearise();
        assert!(text.contains("[0] window \"Calc\" @0,0 400x300"), "{text}");
        assert!(text.contains("  [1] button \"7\" @10,100 50x40"), "{text}");
        assert!(
            text.contains("[2] password_input \"Password\" value=<hidden> (focused, editable)"),
            "{text}"
        );
        assert!(!text.contains("secret"));
        assert_eq!(text.lines().count(), 3, "hidden node left out:\n{text}");
        assert!(t.focused().unwrap().password);
    }

    #[test]
    fn snapshot_survives_json() {
        let t = sample();
        let json = serde_json::to_string(&t).unwrap();
        let mut back: AccessTree = serde_json::from_str(&json).unwrap();
        back.reindex();
        assert_eq!(back.linearise(), t.linearise());
    }

    #[test]
    fn sentinel_extents_mean_no_bounds() {
        assert!(rect_from_extents(i32::MIN, i32::MIN, 0, 0).is_none());
        assert!(rect_from_extents(0, 0, 0, 10).is_none());
        assert_eq!(
            rect_from_extents(1, 2, 3, 4).unwrap(),
            Rect::new(1.0, 2.0, 4.0, 6.0)
        );
    }
}
