//! What each node of an accessibility tree answered, and the tree built from it.
//!
//! A walk (`atspi`) and a kept tree's refresh (`kept`) both read nodes into [`Facts`] by
//! address; [`build_tree`] makes the accesskit tree the agent sees from them, the same
//! whichever read them and in whatever order. This module reads nothing itself and must not
//! depend on the bus.

use std::collections::HashMap;

use accesskit::{Node, NodeId, Role, Toggled, TreeInfo, TreeUpdate};
use atspi::{Interface, InterfaceSet, State, StateSet};

use crate::observe::tree::{AccessTree, AppRef, Truncation, rect_from_extents};

/// The path of an app's root node.
pub(crate) const ROOT_PATH: &str = "/org/a11y/atspi/accessible/root";

/// A node's address: the bus name that answers for it and its object path.
pub(crate) type Key = (String, String);

/// What one node answered: everything its accesskit node is made from, kept between steps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Facts {
    pub(crate) role: atspi::Role,
    pub(crate) name: String,
    pub(crate) states: StateSet,
    pub(crate) interfaces: InterfaceSet,
    pub(crate) children: Vec<Key>,
    pub(crate) text: Option<String>,
    pub(crate) value: Option<f64>,
    pub(crate) extents: Option<(i32, i32, i32, i32)>,
}

/// A whole tree's nodes as read, by address.
pub(crate) struct Whole {
    pub(crate) facts: HashMap<Key, Facts>,
    pub(crate) truncated: Option<Truncation>,
    pub(crate) trust_showing: bool,
    pub(crate) announces_moves: bool,
}

impl Facts {
    /// Whether the node is on the screen: see [`Toolkit::trust_showing`].
    pub(crate) fn shown(&self, trust_showing: bool) -> bool {
        let showing = self.states.contains(State::Showing) || !trust_showing;
        showing && self.states.contains(State::Visible)
    }

    /// The accesskit node, without its children.
    fn node(&self, trust_showing: bool) -> Node {
        let (role, states, interfaces) = (self.role, self.states, self.interfaces);
        let mut node = Node::new(map_role(role, states));
        if !self.name.is_empty() {
            node.set_label(self.name.clone());
        }
        if let Some(text) = self.text.as_ref().filter(|t| !t.is_empty()) {
            node.set_value(text.clone());
        } else if let Some(v) = self.value {
            node.set_numeric_value(v);
            node.set_value(format_number(v));
        }
        if let Some((x, y, w, h)) = self.extents
            && let Some(rect) = rect_from_extents(x, y, w, h)
        {
            node.set_bounds(rect);
        }
        if !self.shown(trust_showing) {
            node.set_hidden();
        }
        if !states.contains(State::Enabled) && !states.contains(State::Sensitive) {
            node.set_disabled();
        }
        if states.contains(State::Checked) {
            node.set_toggled(Toggled::True);
        }
        if states.contains(State::Selected) {
            node.set_selected(true);
        }
        if states.contains(State::Expanded) {
            node.set_expanded(true);
        }
        if states.contains(State::Focusable) {
            node.add_action(accesskit::Action::Focus);
        }
        if interfaces.contains(Interface::Action) {
            node.add_action(accesskit::Action::Click);
        }
        if states.contains(State::Editable) || interfaces.contains(Interface::EditableText) {
            node.add_action(accesskit::Action::SetValue);
        } else if matches!(
            role,
            atspi::Role::Text | atspi::Role::Entry | atspi::Role::PasswordText
        ) {
            node.set_read_only();
        }
        node.set_class_name(role.name().to_owned());
        node
    }
}

/// The tree of `app` from nodes read by address: ids in breadth-first order from the root
/// (0), children that were not read left out, the focus on the last focused node. Also
/// returns the addresses reached, in id order (what a kept tree still holds).
pub(crate) fn build_tree(
    app: &AppRef,
    facts: &HashMap<Key, Facts>,
    trust_showing: bool,
    truncated: Option<Truncation>,
    walk_ms: f64,
) -> (AccessTree, Vec<Key>) {
    let root: Key = (app.bus_name.clone(), ROOT_PATH.to_owned());
    let mut order: Vec<Key> = Vec::with_capacity(facts.len());
    let mut ids: HashMap<&Key, NodeId> = HashMap::with_capacity(facts.len());
    let mut nodes: Vec<(NodeId, Node)> = Vec::with_capacity(facts.len());
    let mut focus = NodeId(0);
    if facts.contains_key(&root) {
        ids.insert(&root, NodeId(0));
        order.push(root.clone());
    }
    let mut next = 0usize;
    while next < order.len() {
        let key = order[next].clone();
        let id = NodeId(next as u64);
        next += 1;
        let Some(f) = facts.get(&key) else { continue };
        let mut children = Vec::with_capacity(f.children.len());
        for child in &f.children {
            // A node listed twice (or under itself) is placed once, where first reached.
            if let Some((child_key, _)) = facts.get_key_value(child)
                && !ids.contains_key(child_key)
            {
                let child_id = NodeId(order.len() as u64);
                ids.insert(child_key, child_id);
                order.push(child_key.clone());
                children.push(child_id);
            }
        }
        let mut node = f.node(trust_showing);
        node.set_children(children);
        if f.states.contains(State::Focused) {
            focus = id;
        }
        nodes.push((id, node));
    }
    let update = TreeUpdate {
        nodes,
        tree: Some(TreeInfo::new(NodeId(0))),
        tree_id: accesskit::TreeId::ROOT,
        focus,
    };
    let mut tree = AccessTree::new(app.clone(), update, truncated, walk_ms);
    // The toolkit that leaves SHOWING unset (GTK 4) also gives window coordinates.
    tree.window_relative = !trust_showing;
    (tree, order)
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// AT-SPI's role in accesskit's vocabulary; the states tell a text entry (GTK 3 reports
/// entries as editable `text`) from a label, and one line from many.
fn map_role(role: atspi::Role, states: atspi::StateSet) -> Role {
    use atspi::Role as A;
    let editable = states.contains(State::Editable);
    match role {
        A::Button | A::PushButtonMenu => Role::Button,
        A::ToggleButton => Role::Button,
        A::CheckBox => Role::CheckBox,
        A::RadioButton => Role::RadioButton,
        A::CheckMenuItem => Role::MenuItemCheckBox,
        A::RadioMenuItem => Role::MenuItemRadio,
        A::MenuItem | A::TearoffMenuItem => Role::MenuItem,
        A::Menu | A::PopupMenu => Role::Menu,
        A::MenuBar => Role::MenuBar,
        A::ComboBox => Role::ComboBox,
        A::PasswordText => Role::PasswordInput,
        A::Entry => Role::TextInput,
        A::Text if editable && states.contains(State::MultiLine) => Role::MultilineTextInput,
        A::Text if editable => Role::TextInput,
        A::Text | A::Static => Role::Label,
        A::Terminal => Role::Terminal,
        A::Label | A::AcceleratorLabel | A::Caption => Role::Label,
        A::Link => Role::Link,
        A::Image | A::Icon | A::DesktopIcon | A::Animation => Role::Image,
        A::List | A::ListBox => Role::List,
        A::ListItem => Role::ListItem,
        A::Table | A::TreeTable => Role::Table,
        A::Tree => Role::Tree,
        A::TreeItem => Role::TreeItem,
        A::TableCell => Role::Cell,
        A::TableRow => Role::Row,
        A::ColumnHeader | A::TableColumnHeader => Role::ColumnHeader,
        A::RowHeader | A::TableRowHeader => Role::RowHeader,
        A::PageTab => Role::Tab,
        A::PageTabList => Role::TabList,
        A::ToolBar => Role::Toolbar,
        A::StatusBar => Role::Status,
        A::ToolTip => Role::Tooltip,
        A::ProgressBar | A::LevelBar => Role::ProgressIndicator,
        A::ScrollBar => Role::ScrollBar,
        A::ScrollPane | A::Viewport => Role::ScrollView,
        A::Slider | A::Dial => Role::Slider,
        A::SpinButton => Role::SpinButton,
        A::Separator => Role::Splitter,
        A::SplitPane => Role::Pane,
        A::Dialog | A::FileChooser | A::ColorChooser | A::FontChooser | A::OptionPane => {
            Role::Dialog
        }
        A::Alert | A::Notification => Role::Alert,
        A::Frame | A::Window | A::InternalFrame | A::DesktopFrame => Role::Window,
        A::Application => Role::Application,
        A::DocumentFrame
        | A::DocumentText
        | A::DocumentWeb
        | A::DocumentEmail
        | A::DocumentSpreadsheet
        | A::DocumentPresentation => Role::Document,
        A::Heading => Role::Heading,
        A::Paragraph => Role::Paragraph,
        A::Form => Role::Form,
        A::Canvas | A::DrawingArea => Role::Canvas,
        A::Calendar | A::DateEditor => Role::DateInput,
        A::Article => Role::Article,
        A::Landmark => Role::Region,
        A::Grouping => Role::Group,
        A::BlockQuote => Role::Blockquote,
        A::TitleBar => Role::TitleBar,
        A::Math => Role::Math,
        A::Panel
        | A::Filler
        | A::Section
        | A::RootPane
        | A::LayeredPane
        | A::GlassPane
        | A::Embedded
        | A::HTMLContainer
        | A::DirectoryPane
        | A::Page
        | A::Header
        | A::Footer => Role::GenericContainer,
        _ => Role::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> Key {
        (":1.5".to_owned(), path.to_owned())
    }

    fn facts(role: atspi::Role, name: &str, children: &[&str], states: &[State]) -> Facts {
        Facts {
            role,
            name: name.to_owned(),
            states: states.iter().copied().collect(),
            interfaces: InterfaceSet::empty(),
            children: children.iter().map(|c| key(c)).collect(),
            text: None,
            value: None,
            extents: None,
        }
    }

    fn app() -> AppRef {
        AppRef {
            name: "demo".into(),
            bus_name: ":1.5".into(),
            pid: Some(7),
        }
    }

    /// A tree is the same however its nodes were read: ids breadth-first from the root,
    /// children never read left out, a node listed twice (or under itself) placed once, the
    /// focus on the focused node; and what is no longer reached is reported so a kept tree
    /// can drop it.
    #[test]
    fn a_tree_is_built_breadth_first_from_nodes_read_in_any_order() {
        let shown = [State::Showing, State::Visible, State::Enabled];
        let focused = [State::Showing, State::Visible, State::Focused];
        let mut read = HashMap::new();
        read.insert(
            key(ROOT_PATH),
            facts(atspi::Role::Application, "demo", &["/w"], &shown),
        );
        read.insert(
            key("/w"),
            facts(
                atspi::Role::Frame,
                "Demo",
                &["/a", "/b", "/gone", "/a"],
                &shown,
            ),
        );
        read.insert(
            key("/a"),
            facts(atspi::Role::Button, "OK", &["/w"], &focused),
        );
        read.insert(key("/b"), facts(atspi::Role::Label, "Hi", &["/c"], &shown));
        read.insert(key("/c"), facts(atspi::Role::Label, "deep", &[], &shown));
        read.insert(
            key("/orphan"),
            facts(atspi::Role::Label, "old", &[], &shown),
        );
        let (tree, reached) = build_tree(&app(), &read, true, None, 1.0);
        let names: Vec<String> = (0..tree.len() as u64)
            .map(|i| tree.element(NodeId(i)).expect("ids are dense").name)
            .collect();
        assert_eq!(names, ["demo", "Demo", "OK", "Hi", "deep"]);
        assert_eq!(
            tree.node(NodeId(1)).expect("window").children(),
            [NodeId(2), NodeId(3)]
        );
        assert_eq!(tree.focused().map(|e| e.name), Some("OK".to_owned()));
        assert_eq!(reached.len(), 5);
        assert!(!reached.contains(&key("/orphan")));
    }
}
