//! `clawdesk-practice`: one gym task as a real window — GTK buttons, a text field and menus in
//! the gym's 4×2 grid, filling the screen so that the gym's 0-999 grid is the screen's — for
//! practice mode, where the agent acts in it through the pointer and keyboard and reads it
//! through AT-SPI like any other app. The window applies the gym's verifier to what is done
//! in it and shows the outcome in its status line (`clawdesk_gym::practice`), which the
//! runtime's rule judge reads; after a wrong action or a finished task it starts the task again,
//! so one window is a practice session of as many tries as the agent takes.

use std::cell::RefCell;
use std::rc::Rc;

use anyhow::{Context, Result, anyhow};
use atk::prelude::AtkObjectExt;
use clap::Parser;
use clawdesk_gym::screen::{COLS, ROWS};
use clawdesk_gym::status::{Mark, status_line};
use clawdesk_gym::{Cell, GymAction, Task, TaskKind, Widget, WidgetRole};
use gtk::prelude::*;
use gtk::{gdk, glib};

/// Opens a practice task in a window of its own.
#[derive(Debug, Parser)]
#[command(name = "clawdesk-practice", version)]
struct Args {
    /// The kind of task: click, type or menu.
    #[arg(long, default_value = "click", value_parser = kind)]
    kind: TaskKind,
    /// Which task of that kind (the gym's seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn kind(name: &str) -> Result<TaskKind, String> {
    TaskKind::parse(name).ok_or_else(|| format!("unknown kind {name:?}: click, type or menu"))
}

const CSS: &str = "
window { background-color: #e4e4e4; }
button.practice { background-image: none; border: 3px solid #181818; border-radius: 6px;
  font-size: 22px; font-weight: bold; }
button.red { background-color: #d83a3a; color: #ffffff; }
button.green { background-color: #3aa845; color: #ffffff; }
button.blue { background-color: #3a66d8; color: #ffffff; }
button.yellow { background-color: #f0d030; color: #181818; }
button.purple { background-color: #9040c0; color: #ffffff; }
button.orange { background-color: #f08a24; color: #181818; }
entry.practice { font-size: 22px; border: 3px solid #181818; }
label.status { background-color: rgba(24, 24, 24, 0.8); color: #ffffff; font-size: 16px;
  padding: 4px 14px; margin: 10px; border-radius: 4px; }
";

fn main() -> Result<()> {
    let args = Args::parse();
    let start = Task::generate(args.kind, args.seed);
    gtk::init().context("GTK could not open the display (is DISPLAY set?)")?;
    let screen = gdk::Screen::default().ok_or_else(|| anyhow!("no default screen"))?;
    let css = gtk::CssProvider::new();
    css.load_from_data(CSS.as_bytes())
        .context("the practice window's style")?;
    gtk::StyleContext::add_provider_for_screen(
        &screen,
        &css,
        gtk::STYLE_PROVIDER_PRIORITY_APPLICATION,
    );

    let window = gtk::Window::new(gtk::WindowType::Toplevel);
    window.set_title(&format!("ClawDesk practice: {}", start.instruction()));
    window.set_decorated(false);
    if let Some(monitor) = gdk::Display::default().and_then(|d| d.monitor(0)) {
        let area = monitor.geometry();
        window.set_default_size(area.width(), area.height());
    }
    window.move_(0, 0);
    let overlay = gtk::Overlay::new();
    let grid = gtk::Grid::new();
    grid.set_row_homogeneous(true);
    grid.set_column_homogeneous(true);
    overlay.add(&grid);
    let status = gtk::Label::new(Some(&status_line(0, None)));
    status.set_halign(gtk::Align::Center);
    status.set_valign(gtk::Align::End);
    status.style_context().add_class("status");
    overlay.add_overlay(&status);
    // The status sits over the grid but takes no clicks: they belong to the cell beneath.
    overlay.set_overlay_pass_through(&status, true);
    window.add(&overlay);

    let practice = Rc::new(Practice {
        grid,
        status,
        state: RefCell::new(State {
            task: start.clone(),
            start,
            actions: 0,
        }),
    });
    practice.build();
    window.connect_destroy(|_| gtk::main_quit());
    window.show_all();
    window.fullscreen();
    gtk::main();
    Ok(())
}

struct State {
    start: Task,
    task: Task,
    /// Actions taken in the window so far.
    actions: usize,
}

struct Practice {
    grid: gtk::Grid,
    status: gtk::Label,
    state: RefCell<State>,
}

impl Practice {
    /// Lays the task's current screen into the grid, a widget or an empty, clickable cell in
    /// each place.
    fn build(self: &Rc<Self>) {
        for child in self.grid.children() {
            self.grid.remove(&child);
        }
        let state = self.state.borrow();
        let screen = state.task.screen();
        let mut focus = None;
        for row in 0..ROWS {
            for col in 0..COLS {
                let cell = Cell { col, row };
                let child: gtk::Widget = match screen.widget_at(cell) {
                    Some((_, widget)) => match widget.role {
                        WidgetRole::TextField => {
                            let entry = self.field(widget, screen.typed.as_deref());
                            focus = Some(entry.clone());
                            entry.upcast()
                        }
                        _ => self.button(widget).upcast(),
                    },
                    None => self.empty(cell).upcast(),
                };
                child.set_hexpand(true);
                child.set_vexpand(true);
                self.grid.attach(&child, col as i32, row as i32, 1, 1);
            }
        }
        drop(state);
        self.grid.show_all();
        if let Some(entry) = focus {
            entry.grab_focus();
        }
    }

    fn button(self: &Rc<Self>, widget: &Widget) -> gtk::Button {
        let button = gtk::Button::with_label(&widget.name());
        let style = button.style_context();
        style.add_class("practice");
        style.add_class(widget.colour.name());
        margins(&button);
        let (me, cell) = (Rc::downgrade(self), widget.cell);
        button.connect_clicked(move |_| {
            if let Some(me) = me.upgrade() {
                me.later(click(cell));
            }
        });
        button
    }

    fn field(self: &Rc<Self>, widget: &Widget, typed: Option<&str>) -> gtk::Entry {
        let entry = gtk::Entry::new();
        entry.set_text(typed.unwrap_or_default());
        entry.style_context().add_class("practice");
        entry.set_valign(gtk::Align::Center);
        margins(&entry);
        // Screen readers and the agent know the field by the gym's name for it.
        if let Some(accessible) = entry.accessible() {
            accessible.set_name(&widget.name());
        }
        let (me, cell) = (Rc::downgrade(self), widget.cell);
        entry.connect_button_press_event(move |_, _| {
            if let Some(me) = me.upgrade() {
                me.later(click(cell));
            }
            glib::Propagation::Proceed
        });
        let me = Rc::downgrade(self);
        entry.connect_changed(move |entry| {
            let Some(me) = me.upgrade() else { return };
            let text = entry.text().to_string();
            let right = me.state.borrow().task.expert();
            // A word is judged once it is whole, or as soon as it cannot become the right one.
            let judge = match right {
                Some(GymAction::Type { text: word }) => text == word || !word.starts_with(&text),
                _ => !text.is_empty(),
            };
            if judge && !text.is_empty() {
                me.later(GymAction::Type { text });
            }
        });
        entry
    }

    fn empty(self: &Rc<Self>, cell: Cell) -> gtk::EventBox {
        let area = gtk::EventBox::new();
        area.add_events(gdk::EventMask::BUTTON_PRESS_MASK);
        let me = Rc::downgrade(self);
        area.connect_button_press_event(move |_, _| {
            if let Some(me) = me.upgrade() {
                me.later(click(cell));
            }
            glib::Propagation::Stop
        });
        area
    }

    /// Applies the action once the signal that reported it has returned (the grid is rebuilt,
    /// which must not happen under the widget that is still emitting).
    fn later(self: &Rc<Self>, action: GymAction) {
        let me = Rc::downgrade(self);
        glib::idle_add_local_once(move || {
            if let Some(me) = me.upgrade() {
                me.apply(&action);
            }
        });
    }

    fn apply(self: &Rc<Self>, action: &GymAction) {
        let mut state = self.state.borrow_mut();
        let Some(outcome) = state.task.step(Some(action)) else {
            return;
        };
        state.actions += 1;
        let mark = match (outcome.reward > 0.0, outcome.done) {
            (false, _) => Mark::Wrong,
            (true, true) => Mark::Done,
            (true, false) => Mark::Right,
        };
        if state.task.is_done() {
            state.task = state.start.clone();
        }
        self.status
            .set_text(&status_line(state.actions, Some(mark)));
        drop(state);
        self.build();
    }
}

fn click(cell: Cell) -> GymAction {
    let (x, y) = cell.center_grid();
    GymAction::Click { x, y }
}

fn margins(widget: &impl IsA<gtk::Widget>) {
    for set in [
        gtk::Widget::set_margin_top,
        gtk::Widget::set_margin_bottom,
        gtk::Widget::set_margin_start,
        gtk::Widget::set_margin_end,
    ] {
        set(widget.upcast_ref(), 18);
    }
}
