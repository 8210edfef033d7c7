//! Accessibility trees kept between steps and refreshed from AT-SPI's events.
//!
//! A whole walk asks every node five or more questions, and the app's own bridge answers
//! them one at a time (about 1,100 calls, 45 ms, for gtk3-demo's 189 nodes). Between two steps
//! little of a tree changes, and the toolkit says what did: children added or removed, a state,
//! a name or value, a text, a widget's bounds. So the first observation of an app walks it
//! whole and keeps what each node answered; later ones re-read only the nodes an event named,
//! walk what is new below them, and re-read the extents that can have changed (on GTK 3, which
//! announces what moves its elements, those below what is no longer where it was; elsewhere
//! every one on screen). A selection that changed in a container re-reads the states of the
//! children it now says are selected.
//! The events come in on a connection of their own (`observe::events`); before a
//! refresh a round trip to the app over that connection makes sure every event the app sent
//! before it has been counted.
//!
//! A kept tree is walked whole again when events may have been missed: when the listener
//! stopped, when an app sent more events than are kept, when a node the tree holds no longer
//! answers, and at the latest every [`KeepTrees::rewalk_every`] refreshes or after
//! [`KeepTrees::rewalk_after`], which bound how long a missed event can go unseen. A tree that
//! was cut short (node cap, time limit) is not kept.
//!
//! This module decides when a kept tree serves and refreshes it; it must not decide whose tree
//! is read (that is [`crate::Desktop::observe`]), and the guard never reads a kept tree: what
//! it checks at the moment of acting it reads whole.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};

use crate::error::{DesktopError, Result};
use crate::observe::atspi::{Accessibility, WalkLimits};
use crate::observe::events::{KeptTree, Listener, MAX_KEPT, lock};
use crate::observe::facts::{Facts, Key, ROOT_PATH, Whole, build_tree};
use crate::observe::tree::{AccessTree, AppRef};

/// How trees are kept between observations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepTrees {
    /// Keep each app's tree and refresh it from events; `false` walks it whole every time.
    pub enabled: bool,
    /// A kept tree older than this is walked whole again: the bound on how long an event the
    /// app did not send (or that was lost) leaves the tree out of date.
    pub rewalk_after: Duration,
    /// The tree is walked whole again after this many refreshes: the same bound, counted in
    /// steps, for an agent whose steps are slow (a CPU model can take longer than
    /// `rewalk_after` per step) or fast.
    pub rewalk_every: u32,
}

impl Default for KeepTrees {
    fn default() -> Self {
        KeepTrees {
            enabled: true,
            rewalk_after: Duration::from_secs(60),
            rewalk_every: 10,
        }
    }
}

impl KeepTrees {
    /// Every observation walks the tree whole.
    pub fn never() -> Self {
        KeepTrees {
            enabled: false,
            ..KeepTrees::default()
        }
    }
}

/// How an observation's tree was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "read", rename_all = "snake_case")]
pub enum TreeRead {
    /// Walked whole, for this reason.
    Walked {
        /// Why no kept tree served.
        why: WalkReason,
    },
    /// The kept tree, refreshed.
    Kept {
        /// Events taken since the last observation of the app.
        events: usize,
        /// Nodes read again because an event named them.
        reread: usize,
        /// Nodes new below them, read for the first time.
        added: usize,
        /// Extents read again (the nodes on screen).
        extents: usize,
    },
}

/// Why a tree was walked whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WalkReason {
    /// Keeping trees is off.
    NotKeeping,
    /// The app had no kept tree (its first observation, or the last walk was cut short).
    NotKept,
    /// The kept tree was older than [`KeepTrees::rewalk_after`] or had been refreshed
    /// [`KeepTrees::rewalk_every`] times.
    Aged,
    /// Events may have been lost: the listener restarted, or the app sent more than are kept.
    EventsLost,
    /// No events can be had on this bus (the registry refused), so nothing can be kept.
    NoEvents,
    /// A refresh failed: a node no longer answered, or the app did not answer the round trip.
    RefreshFailed,
    /// So much changed that a whole walk costs less.
    MostChanged,
}

impl Accessibility {
    /// `app`'s tree, refreshed from the kept one where `keep` allows and nothing says events
    /// were missed; walked whole otherwise. Says which it was.
    pub async fn observe_tree(
        &self,
        app: &AppRef,
        limits: WalkLimits,
        keep: KeepTrees,
    ) -> Result<(AccessTree, TreeRead)> {
        let start = Instant::now();
        let walker = self.with_peer(&app.bus_name).await;
        if !keep.enabled {
            let tree = walker.snapshot(app, limits).await?;
            let why = WalkReason::NotKeeping;
            return Ok((tree, TreeRead::Walked { why }));
        }
        let kept = self.kept();
        let listener = kept.listener(self.address()).await;
        let mut trees = kept.trees.lock().await;
        let why = match (&listener, trees.get_mut(&app.bus_name)) {
            (None, _) => WalkReason::NoEvents,
            (Some(_), None) => WalkReason::NotKept,
            // A refresh that did not finish (its observation was dropped) left it half done.
            (Some(_), Some(tree)) if tree.refreshing => WalkReason::RefreshFailed,
            (Some(l), Some(tree)) if tree.epoch != l.epoch => WalkReason::EventsLost,
            (Some(_), Some(tree))
                if tree.walked_at.elapsed() >= keep.rewalk_after
                    || tree.refreshes >= keep.rewalk_every =>
            {
                WalkReason::Aged
            }
            (Some(l), Some(tree)) => match walker.refresh(app, tree, l, limits).await {
                Ok(Refreshed::Tree(read)) => {
                    tree.used_at = Instant::now();
                    tree.refreshes += 1;
                    let walk_ms = start.elapsed().as_secs_f64() * 1e3;
                    let (out, reached) =
                        build_tree(app, &tree.facts, tree.trust_showing, None, walk_ms);
                    // What the tree no longer reaches is dropped.
                    if reached.len() < tree.facts.len() {
                        let reached: HashSet<Key> = reached.into_iter().collect();
                        tree.facts.retain(|k, _| reached.contains(k));
                    }
                    if complete(&tree.facts) {
                        return Ok((out, read));
                    }
                    // A node that did not answer is missing, and no event would bring it.
                    WalkReason::RefreshFailed
                }
                Ok(Refreshed::Walk(why)) => why,
                Err(e @ DesktopError::AppNotResponding { .. }) => {
                    // Walked whole when it answers again: its events may not all be in.
                    if let Some(old) = trees.remove(&app.bus_name)
                        && let Some(l) = &listener
                    {
                        l.unwatch(&senders(&old.facts));
                    }
                    return Err(e);
                }
                Err(e) => {
                    tracing::debug!(app = %app.name, "refresh failed, walking whole: {e}");
                    WalkReason::RefreshFailed
                }
            },
        };
        if let Some(old) = trees.remove(&app.bus_name)
            && let Some(l) = &listener
        {
            l.unwatch(&senders(&old.facts));
        }
        // Events from here on mark what the walk may already have read too old; those nodes
        // are read again at the next refresh.
        if let Some(l) = &listener {
            l.watch([app.bus_name.as_str()]);
        }
        let whole: Whole = match walker.read_whole(app, limits).await {
            Ok(whole) => whole,
            Err(e) => {
                if let Some(l) = &listener {
                    l.unwatch(&HashSet::from([app.bus_name.as_str()]));
                }
                return Err(e);
            }
        };
        let walk_ms = start.elapsed().as_secs_f64() * 1e3;
        let (tree, _) = build_tree(
            app,
            &whole.facts,
            whole.trust_showing,
            whole.truncated.clone(),
            walk_ms,
        );
        tracing::debug!(app = %app.name, nodes = tree.len(), walk_ms, ?why, "walked tree");
        match &listener {
            // A tree cut short, or missing a node that did not answer, is not kept: no event
            // would bring back what it lacks.
            Some(l) if whole.truncated.is_none() && complete(&whole.facts) => {
                let senders = senders(&whole.facts);
                // Nodes another process answers for (a plug) send their events themselves.
                l.watch(senders.iter().copied().filter(|s| *s != app.bus_name));
                if trees.len() >= MAX_KEPT
                    && let Some(oldest) = trees
                        .iter()
                        .min_by_key(|(_, t)| t.used_at)
                        .map(|(k, _)| k.clone())
                    && let Some(old) = trees.remove(&oldest)
                {
                    l.unwatch(&self::senders(&old.facts));
                }
                let now = Instant::now();
                trees.insert(
                    app.bus_name.clone(),
                    KeptTree {
                        facts: whole.facts,
                        trust_showing: whole.trust_showing,
                        announces_moves: whole.announces_moves,
                        walked_at: now,
                        used_at: now,
                        refreshes: 0,
                        refreshing: false,
                        epoch: l.epoch,
                    },
                );
            }
            Some(l) => l.unwatch(&HashSet::from([app.bus_name.as_str()])),
            None => {}
        }
        Ok((tree, TreeRead::Walked { why }))
    }

    /// Forgets the events `app` sent since it was last observed, as if they had been lost:
    /// for tests of the fallback that recovers from missed events.
    #[doc(hidden)]
    pub async fn lose_events(&self, app: &AppRef) {
        let listener = self.kept().listener.lock().await.clone();
        if let Some(l) = listener {
            if let Err(e) = l.sync(&app.bus_name, Duration::from_secs(2)).await {
                tracing::warn!("no round trip before losing events: {e:?}");
            }
            lock(&l.log).forget();
        }
    }

    /// Brings `tree` up to date with the events since it was read, and reads the extents of
    /// the nodes on screen again; or says why it should be walked whole instead.
    async fn refresh(
        &self,
        app: &AppRef,
        tree: &mut KeptTree,
        listener: &Listener,
        limits: WalkLimits,
    ) -> Result<Refreshed> {
        // Until this returns a tree, the kept one is half refreshed.
        tree.refreshing = true;
        // An app that does not answer is reported, as a whole walk would, not walked.
        match listener.sync(&app.bus_name, limits.call_timeout).await {
            Ok(()) => {}
            Err(None) => {
                return Err(DesktopError::AppNotResponding {
                    app: app.name.clone(),
                    after_ms: limits.call_timeout.as_millis() as u64,
                });
            }
            Err(Some(e)) => return Err(DesktopError::Accessibility(e)),
        }
        let senders = senders(&tree.facts);
        let heard = lock(&listener.log).take(&senders);
        if heard.overflowed {
            return Ok(Refreshed::Walk(WalkReason::EventsLost));
        }
        let dirty = heard.nodes;
        // Events about nodes the tree does not hold are news of their parents' events. The
        // nodes that hold focus or selection are read again whatever was heard: GTK 3's
        // table cells announce the cell that gains them, not always the one that loses them.
        let changed: Vec<Key> = tree
            .facts
            .iter()
            .filter(|(k, f)| {
                dirty.contains(*k)
                    || f.states.contains(atspi::State::Focused)
                    || f.states.contains(atspi::State::Selected)
            })
            .map(|(k, _)| k.clone())
            .collect();
        if changed.len() * 2 > tree.facts.len() {
            return Ok(Refreshed::Walk(WalkReason::MostChanged));
        }
        let reread = changed.len();
        // What the nodes read again said before: whether they really moved is told by it.
        let was: HashMap<Key, Facts> = changed
            .iter()
            .filter_map(|k| tree.facts.remove(k).map(|f| (k.clone(), f)))
            .collect();
        let before = tree.facts.len();
        let deadline = Instant::now() + limits.time_limit;
        let truncated = self
            .read_below(app, changed.clone(), &mut tree.facts, limits, deadline)
            .await?;
        if truncated.is_some() {
            return Ok(Refreshed::Walk(WalkReason::NotKept));
        }
        if changed.iter().any(|k| !tree.facts.contains_key(k)) {
            // A node an event named is gone: its parent's event may not have come yet.
            return Ok(Refreshed::Walk(WalkReason::RefreshFailed));
        }
        let added = tree.facts.len().saturating_sub(before + reread);
        let fresh: HashSet<&Key> = changed.iter().collect();
        let mut restate = self.newly_selected(tree, &heard.selections, limits).await;
        restate.retain(|k| !fresh.contains(k));
        tracing::trace!(
            selections = heard.selections.len(),
            restate = restate.len(),
            changed = changed.len(),
            "refresh"
        );
        // Which extents can have changed: every one on screen, unless the toolkit announces
        // what moves its elements.
        let (may_have_moved, windows) = if tree.announces_moves {
            match self
                .moved_below(app, tree, &heard.moved, &was, limits)
                .await
            {
                Some((below, windows)) => (Some(below), windows),
                None => return Ok(Refreshed::Walk(WalkReason::RefreshFailed)),
            }
        } else {
            (None, 0)
        };
        let mut light: Vec<(Key, bool, bool)> = tree
            .facts
            .iter()
            .filter(|(k, _)| !fresh.contains(k))
            .map(|(k, f)| {
                let extents = f.extents.is_some()
                    && f.shown(tree.trust_showing)
                    && f.interfaces.contains(atspi::Interface::Component)
                    // Nodes another process answers for (a web view's) move by its rules.
                    && may_have_moved
                        .as_ref()
                        .is_none_or(|m| m.contains(k) || k.0 != app.bus_name);
                (k.clone(), extents, restate.contains(k))
            })
            .filter(|(_, extents, states)| *extents || *states)
            .collect();
        let extents = windows + light.iter().filter(|(_, e, _)| *e).count();
        let mut reads = FuturesUnordered::new();
        let mut queue = light.drain(..);
        loop {
            while reads.len() < IN_FLIGHT
                && let Some((key, want_extents, want_states)) = queue.next()
            {
                let this = self.clone();
                let timeout = limits.call_timeout;
                reads.push(async move {
                    let read = async {
                        let extents = async {
                            match want_extents {
                                true => this.extents(&key.0, &key.1).await.map(Some),
                                false => Ok(None),
                            }
                        };
                        let states = async {
                            match want_states {
                                true => this.states(&key.0, &key.1).await.map(Some),
                                false => Ok(None),
                            }
                        };
                        futures::try_join!(extents, states)
                    };
                    let read = tokio::time::timeout(timeout, read).await;
                    (key, read)
                });
            }
            let Some((key, read)) = reads.next().await else {
                break;
            };
            match read {
                Ok(Ok((e, st))) => {
                    if let Some(f) = tree.facts.get_mut(&key) {
                        if e.is_some() {
                            f.extents = e;
                        }
                        if let Some(st) = st {
                            f.states = st;
                        }
                    }
                }
                _ => return Ok(Refreshed::Walk(WalkReason::RefreshFailed)),
            }
        }
        tree.refreshing = false;
        Ok(Refreshed::Tree(TreeRead::Kept {
            events: heard.events,
            reread,
            added,
            extents,
        }))
    }
}

impl Accessibility {
    /// For an app whose toolkit announces moves: the nodes whose extents can have changed,
    /// those below a node that really moved and below a top-level window that moved or
    /// changed size. GTK 3 announces every size allocation, most of them to the same place
    /// (a new page in a notebook re-allocates the whole window), so a node moved only if it
    /// is not where it was, its children changed, or its value did (a scroll bar's moves the
    /// view beside it: its parent's subtree). Widgets below a node that did not move announce
    /// their own moves. The extents of the windows and of announced nodes not read again are
    /// read here, and how many is returned too; `None` if one did not answer.
    async fn moved_below(
        &self,
        app: &AppRef,
        tree: &mut KeptTree,
        moved: &HashSet<Key>,
        before: &HashMap<Key, Facts>,
        limits: WalkLimits,
    ) -> Option<(HashSet<Key>, usize)> {
        let root: Key = (app.bus_name.clone(), ROOT_PATH.to_owned());
        let windows: Vec<Key> = tree
            .facts
            .get(&root)
            .map(|f| f.children.clone())
            .unwrap_or_default();
        let mut roots: Vec<Key> = Vec::new();
        // Announced (or top-level) nodes not read again this refresh: their extents are asked.
        let mut ask: Vec<Key> = Vec::new();
        {
            let parents: HashMap<&Key, &Key> = tree
                .facts
                .iter()
                .flat_map(|(k, f)| f.children.iter().map(move |c| (c, k)))
                .collect();
            let mut seen: HashSet<&Key> = HashSet::new();
            let announced = moved.iter().map(|k| (k, true));
            for (k, announced) in announced.chain(windows.iter().map(|k| (k, false))) {
                let Some(now) = tree.facts.get(k) else {
                    continue;
                };
                if !seen.insert(k) {
                    continue;
                }
                let placed =
                    now.extents.is_some() && now.interfaces.contains(atspi::Interface::Component);
                // A window with no place to compare says nothing by being a window.
                if !announced && !placed {
                    continue;
                }
                match before.get(k) {
                    Some(was) => {
                        if was.value != now.value {
                            roots.push(match (now.role, parents.get(k)) {
                                (atspi::Role::ScrollBar, Some(parent)) => (*parent).clone(),
                                _ => k.clone(),
                            });
                        }
                        if !placed || was.extents != now.extents || was.children != now.children {
                            roots.push(k.clone());
                        }
                    }
                    None if placed => ask.push(k.clone()),
                    // Where it is cannot be compared: what is below is read again.
                    None => roots.push(k.clone()),
                }
            }
        }
        for some in ask.chunks(IN_FLIGHT) {
            let reads = some.iter().map(|k| async move {
                let read =
                    tokio::time::timeout(limits.call_timeout, self.extents(&k.0, &k.1)).await;
                (k, read)
            });
            for (k, read) in futures::future::join_all(reads).await {
                let Ok(Ok(now)) = read else { return None };
                if let Some(f) = tree.facts.get_mut(k)
                    && f.extents != Some(now)
                {
                    f.extents = Some(now);
                    roots.push(k.clone());
                }
            }
        }
        let mut below: HashSet<Key> = HashSet::new();
        while let Some(k) = roots.pop() {
            if let Some(f) = tree.facts.get(&k) {
                roots.extend(f.children.iter().filter(|c| !below.contains(*c)).cloned());
            }
            below.insert(k);
        }
        for k in &ask {
            below.remove(k);
        }
        Some((below, ask.len()))
    }

    /// The nodes whose states a selection change can have changed: below containers whose
    /// selection changed (GTK 3 tables announce it on the table, not on the cells), the
    /// children the container now says are selected and what is below them (GTK 3 puts a
    /// tree view's cells inside container cells). Those that were selected are read again
    /// anyway. Where the container cannot say, every node below it.
    async fn newly_selected(
        &self,
        tree: &KeptTree,
        containers: &HashSet<Key>,
        limits: WalkLimits,
    ) -> HashSet<Key> {
        let mut restate: HashSet<Key> = HashSet::new();
        for c in containers {
            let Some(facts) = tree.facts.get(c) else {
                continue;
            };
            let said = match facts.interfaces.contains(atspi::Interface::Selection) {
                true => {
                    let ask = self.selected_children(&c.0, &c.1, MAX_SELECTED);
                    match tokio::time::timeout(limits.call_timeout, ask).await {
                        Ok(Ok(said)) => said,
                        _ => None,
                    }
                }
                false => None,
            };
            restate.extend(states_to_read(&tree.facts, c, said));
        }
        restate
    }
}

/// Whose states to read again after `container`'s selection changed: the children it `said`
/// are selected and every node below them; every node below the container when it said
/// nothing, or named a node the tree does not hold (a reply that cannot be placed is not
/// trusted to be the whole answer).
fn states_to_read(
    facts: &HashMap<Key, Facts>,
    container: &Key,
    said: Option<Vec<Key>>,
) -> HashSet<Key> {
    let mut out: HashSet<Key> = HashSet::new();
    let mut below = match said {
        Some(children) if children.iter().all(|k| facts.contains_key(k)) => {
            out.extend(children.iter().cloned());
            children
        }
        _ => vec![container.clone()],
    };
    while let Some(k) = below.pop() {
        for child in facts.get(&k).map(|f| f.children.as_slice()).unwrap_or(&[]) {
            if facts.contains_key(child) && out.insert(child.clone()) {
                below.push(child.clone());
            }
        }
    }
    out
}

/// Past this many selected children a container's nodes are all read again instead of asked
/// for one by one.
const MAX_SELECTED: usize = 64;

/// How many extents reads are in flight at once.
const IN_FLIGHT: usize = 48;

enum Refreshed {
    Tree(TreeRead),
    Walk(WalkReason),
}

/// Whether every child a node lists was read.
fn complete(facts: &HashMap<Key, Facts>) -> bool {
    facts
        .values()
        .all(|f| f.children.iter().all(|c| facts.contains_key(c)))
}

fn senders(facts: &HashMap<Key, Facts>) -> HashSet<&str> {
    facts.keys().map(|(dest, _)| dest.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> Key {
        (":1.5".to_owned(), path.to_owned())
    }

    /// A table `/t` of two rows; each row a container cell holding a text cell.
    fn table() -> HashMap<Key, Facts> {
        let node = |children: &[&str]| Facts {
            role: atspi::Role::TableCell,
            name: String::new(),
            states: atspi::StateSet::empty(),
            interfaces: atspi::InterfaceSet::empty(),
            children: children.iter().map(|p| key(p)).collect(),
            text: None,
            value: None,
            extents: None,
        };
        HashMap::from([
            (key("/t"), node(&["/r1", "/r2"])),
            (key("/r1"), node(&["/r1/c"])),
            (key("/r1/c"), node(&[])),
            (key("/r2"), node(&["/r2/c"])),
            (key("/r2/c"), node(&[])),
        ])
    }

    fn keys(paths: &[&str]) -> HashSet<Key> {
        paths.iter().map(|p| key(p)).collect()
    }

    #[test]
    fn the_children_said_selected_and_what_is_below_them_are_read_again() {
        let read = states_to_read(&table(), &key("/t"), Some(vec![key("/r2")]));
        assert_eq!(read, keys(&["/r2", "/r2/c"]));
    }

    #[test]
    fn a_container_that_says_nothing_has_every_node_below_it_read_again() {
        let all = keys(&["/r1", "/r1/c", "/r2", "/r2/c"]);
        assert_eq!(states_to_read(&table(), &key("/t"), None), all);
        // A child the tree does not hold (a null path, a cell made since the walk): the
        // answer cannot be placed, so it is not taken as the whole answer.
        let unknown = Some(vec![key("/r2"), key("/org/a11y/atspi/null")]);
        assert_eq!(states_to_read(&table(), &key("/t"), unknown), all);
    }
}
