//! Accessibility trees kept between steps and refreshed from AT-SPI's events.
//!
//! A whole walk asks every node five or more questions, and the app's own bridge answers
//! them one at a time (about 1,100 calls, 45 ms, for gtk3-demo's 189 nodes). Between two steps
//! little of a tree changes, and the toolkit says what did: children added or removed, a state,
//! a name or value, a text. So the first observation of an app walks it whole and keeps what
//! each node answered; later ones re-read only the nodes an event named, walk what is new
//! below them, and re-read the extents of the nodes on screen (a window that moves sends no
//! event per widget). The events come in on a connection of their own; before a refresh a
//! round trip to the app over that connection makes sure every event the app sent before it
//! has been counted.
//!
//! A kept tree is walked whole again when events may have been missed: when the listener
//! stopped, when an app sent more events than are kept, when a node the tree holds no longer
//! answers, and at the latest every [`KeepTrees::rewalk_every`] observations of the app or
//! after [`KeepTrees::rewalk_after`], which bound how long a missed event can go unseen. A tree that was cut short (node cap, time limit) is not kept.
//!
//! This module owns the kept trees and the event listener; it must not decide whose tree is
//! read (that is [`crate::Desktop::observe`]) and the guard never reads a kept tree: what it
//! checks at the moment of acting it reads whole.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use zbus::message::Type as MessageType;

use crate::error::{DesktopError, Result};
use crate::observe::atspi::{Accessibility, Facts, Key, WalkLimits, Whole, build_tree};
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

/// The events that say a node changed. Bounds are not among them: extents are read again at
/// every refresh, since moving a window changes every node's and sends no event for them.
const EVENTS: [&str; 6] = [
    "object:children-changed",
    "object:state-changed",
    "object:property-change",
    "object:text-changed",
    "object:active-descendant-changed",
    "object:selection-changed",
];

/// Past this many changed nodes of one app between two observations, the events are not kept
/// and the next observation walks the tree whole.
const MAX_DIRTY: usize = 4096;
/// At most this many apps' trees are kept; the least recently observed is dropped.
const MAX_KEPT: usize = 16;

/// The kept trees of one accessibility bus, shared by every handle to it.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    listener: tokio::sync::Mutex<Option<Arc<Listener>>>,
    /// Whether the registry refused to register the events (no refresh is possible).
    no_events: std::sync::atomic::AtomicBool,
    trees: tokio::sync::Mutex<HashMap<String, KeptTree>>,
}

/// One app's tree as last read.
#[derive(Debug)]
struct KeptTree {
    facts: HashMap<Key, Facts>,
    trust_showing: bool,
    walked_at: Instant,
    used_at: Instant,
    /// Refreshes since the tree was walked.
    refreshes: u32,
    /// The listener's epoch when the tree was walked: another means events were lost.
    epoch: u64,
}

/// The connection events arrive on, and what they said since each app was last observed.
#[derive(Debug)]
struct Listener {
    conn: zbus::Connection,
    log: Arc<Mutex<EventLog>>,
    epoch: u64,
    /// The task reading the events; it ends with the listener, and so does its connection.
    reader: tokio::task::AbortHandle,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[derive(Debug, Default)]
struct EventLog {
    /// Changed object paths by sender, for the senders whose trees are kept.
    dirty: HashMap<String, Dirty>,
    /// Round trips waiting for their reply, by the serial of their call.
    barriers: HashMap<NonZeroU32, tokio::sync::oneshot::Sender<()>>,
    /// The stream ended: no event arrives any more.
    closed: bool,
}

#[derive(Debug, Default)]
struct Dirty {
    /// Nodes to read again.
    paths: HashSet<String>,
    /// Containers whose children's states are to be read again: a selection changed in them
    /// (GTK 3 tables announce it on the table, not on the cells).
    selections: HashSet<String>,
    events: usize,
    overflowed: bool,
}

/// What the events of some senders said: nodes to read again, and containers whose
/// children's states to read again.
#[derive(Debug, Default)]
struct Heard {
    nodes: HashSet<Key>,
    selections: HashSet<Key>,
    events: usize,
    overflowed: bool,
}

impl EventLog {
    /// What `senders` said since the last take: the nodes named, how many events, and
    /// whether some were not kept.
    fn take(&mut self, senders: &HashSet<&str>) -> Heard {
        let mut heard = Heard::default();
        for sender in senders {
            if let Some(d) = self.dirty.get_mut(*sender) {
                let d = std::mem::take(d);
                heard.events += d.events;
                heard.overflowed |= d.overflowed;
                let key = |p: String| ((*sender).to_owned(), p);
                heard.nodes.extend(d.paths.into_iter().map(key));
                heard.selections.extend(d.selections.into_iter().map(key));
            }
        }
        heard
    }
}

/// The listener's epochs: one per listener started, so a tree can tell it outlived one.
static EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Listener {
    /// Opens a connection to the bus at `address`, registers the events with the registry
    /// (the toolkits send only events some client asked for) and starts reading them.
    async fn start(address: &str) -> std::result::Result<Arc<Listener>, String> {
        let conn = zbus::connection::Builder::address(address)
            .map_err(|e| e.to_string())?
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let dbus = zbus::fdo::DBusProxy::new(&conn)
            .await
            .map_err(|e| e.to_string())?;
        let rule = zbus::MatchRule::builder()
            .msg_type(MessageType::Signal)
            .interface("org.a11y.atspi.Event.Object")
            .map_err(|e| e.to_string())?
            .build();
        // The stream is taken before the match is added, so no event falls between.
        let mut stream = zbus::MessageStream::from(&conn);
        dbus.add_match_rule(rule).await.map_err(|e| e.to_string())?;
        for event in EVENTS {
            conn.call_method(
                Some("org.a11y.atspi.Registry"),
                "/org/a11y/atspi/registry",
                Some("org.a11y.atspi.Registry"),
                "RegisterEvent",
                &(event,),
            )
            .await
            .map_err(|e| format!("registering {event}: {e}"))?;
        }
        let log = Arc::new(Mutex::new(EventLog::default()));
        let reader_log = log.clone();
        let reader = tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                let Ok(message) = message else { continue };
                note(&reader_log, &message);
            }
            lock(&reader_log).closed = true;
            tracing::info!("the accessibility event stream ended; trees are walked whole");
        });
        Ok(Arc::new(Listener {
            conn,
            log,
            epoch: EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            reader: reader.abort_handle(),
        }))
    }

    fn alive(&self) -> bool {
        !lock(&self.log).closed
    }

    /// Starts recording the events of `senders`, forgetting what they said before.
    fn watch<'a>(&self, senders: impl IntoIterator<Item = &'a str>) {
        let mut log = lock(&self.log);
        for sender in senders {
            log.dirty.insert(sender.to_owned(), Dirty::default());
        }
    }

    fn unwatch(&self, senders: &HashSet<&str>) {
        let mut log = lock(&self.log);
        for sender in senders {
            log.dirty.remove(*sender);
        }
    }

    /// A round trip to `dest` over the events' connection. The app's reply leaves it after
    /// every event it sent before, and the bus keeps one sender's messages in order, so once
    /// the reply is read every such event has been counted. Fails with `None` when the app
    /// did not answer within `timeout`.
    async fn sync(&self, dest: &str, timeout: Duration) -> std::result::Result<(), Option<String>> {
        let ping = zbus::Message::method_call("/", "Ping")
            .and_then(|b| b.destination(dest.to_owned()))
            .and_then(|b| b.interface("org.freedesktop.DBus.Peer"))
            .and_then(|b| b.build(&()))
            .map_err(|e| Some(e.to_string()))?;
        let serial = ping.primary_header().serial_num();
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.log).barriers.insert(serial, tx);
        let sent = async {
            self.conn.send(&ping).await.map_err(|e| e.to_string())?;
            rx.await.map_err(|_| "the event stream ended".to_owned())
        };
        let outcome = tokio::time::timeout(timeout, sent).await;
        lock(&self.log).barriers.remove(&serial);
        match outcome {
            Ok(r) => r.map_err(Some),
            Err(_) => Err(None),
        }
    }
}

fn lock(log: &Mutex<EventLog>) -> std::sync::MutexGuard<'_, EventLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts one message from the events' connection: an event marks its object changed, a
/// reply releases the round trip waiting on it.
fn note(log: &Mutex<EventLog>, message: &zbus::Message) {
    let header = message.header();
    let mut log = lock(log);
    match message.message_type() {
        MessageType::Signal => {
            let (Some(sender), Some(path)) = (header.sender(), header.path()) else {
                return;
            };
            let Some(dirty) = log.dirty.get_mut(sender.as_str()) else {
                return;
            };
            dirty.events += 1;
            tracing::trace!(member = ?header.member(), %path, "event");
            if dirty.overflowed {
                return;
            }
            dirty.paths.insert(path.as_str().to_owned());
            match header.member().map(|m| m.as_str()) {
                Some("SelectionChanged") => {
                    dirty.selections.insert(path.as_str().to_owned());
                }
                // The descendant that became active is named in the event, and may itself
                // send nothing.
                Some("ActiveDescendantChanged") => {
                    if let Some((dest, child)) = event_object(message)
                        && dest == sender.as_str()
                    {
                        dirty.paths.insert(child);
                    }
                }
                _ => {}
            }
            if dirty.paths.len() + dirty.selections.len() > MAX_DIRTY {
                dirty.paths.clear();
                dirty.selections.clear();
                dirty.overflowed = true;
            }
        }
        MessageType::MethodReturn | MessageType::Error => {
            if let Some(serial) = header.reply_serial()
                && let Some(tx) = log.barriers.remove(&serial)
            {
                let _ = tx.send(());
            }
        }
        MessageType::MethodCall => {}
    }
}

/// The object an event carries in its `any_data` (the new active descendant): bus name and
/// path. AT-SPI's event body is (kind, detail1, detail2, any_data, properties); older
/// bridges leave out the properties.
fn event_object(message: &zbus::Message) -> Option<(String, String)> {
    use zbus::zvariant::{OwnedObjectPath, OwnedValue};
    let body = message.body();
    let any = body
        .deserialize::<(String, i32, i32, OwnedValue, HashMap<String, OwnedValue>)>()
        .map(|(_, _, _, any, _)| any)
        .or_else(|_| {
            body.deserialize::<(String, i32, i32, OwnedValue)>()
                .map(|(_, _, _, any)| any)
        })
        .ok()?;
    let (dest, path) = <(String, OwnedObjectPath)>::try_from(any).ok()?;
    Some((dest, path.as_str().to_owned()))
}

impl Kept {
    /// The running listener, started (or restarted) if need be; `None` where the bus gives
    /// no events.
    async fn listener(&self, address: &str) -> Option<Arc<Listener>> {
        use std::sync::atomic::Ordering;
        if self.no_events.load(Ordering::Relaxed) {
            return None;
        }
        let mut slot = self.listener.lock().await;
        if let Some(l) = slot.as_ref()
            && l.alive()
        {
            return Some(l.clone());
        }
        match Listener::start(address).await {
            Ok(l) => {
                *slot = Some(l.clone());
                Some(l)
            }
            Err(e) => {
                tracing::warn!("no accessibility events ({e}); trees are walked whole");
                self.no_events.store(true, Ordering::Relaxed);
                None
            }
        }
    }
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
                    return Ok((out, read));
                }
                Ok(Refreshed::Walk(why)) => why,
                Err(e @ DesktopError::AppNotResponding { .. }) => {
                    // Walked whole when it answers again: its events may not all be in.
                    trees.remove(&app.bus_name);
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
        let whole: Whole = walker.read_whole(app, limits).await?;
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
            Some(l) if whole.truncated.is_none() => {
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
                        walked_at: now,
                        used_at: now,
                        refreshes: 0,
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
            for dirty in lock(&l.log).dirty.values_mut() {
                *dirty = Dirty::default();
            }
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
        for key in &changed {
            tree.facts.remove(key);
        }
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
        // Below containers whose selection changed, every node's states are read again
        // (GTK 3 puts a tree view's cells inside container cells, so not only children).
        let mut restate: HashSet<Key> = HashSet::new();
        let mut below: Vec<&Key> = heard.selections.iter().collect();
        while let Some(k) = below.pop() {
            for child in tree
                .facts
                .get(k)
                .map(|f| f.children.as_slice())
                .unwrap_or(&[])
            {
                if tree.facts.contains_key(child) && restate.insert(child.clone()) {
                    below.push(child);
                }
            }
        }
        restate.retain(|k| !fresh.contains(k));
        tracing::trace!(
            selections = heard.selections.len(),
            restate = restate.len(),
            changed = changed.len(),
            "refresh"
        );
        let mut light: Vec<(Key, bool, bool)> = tree
            .facts
            .iter()
            .filter(|(k, _)| !fresh.contains(k))
            .map(|(k, f)| {
                let extents = f.extents.is_some()
                    && f.shown(tree.trust_showing)
                    && f.interfaces.contains(atspi::Interface::Component);
                (k.clone(), extents, restate.contains(k))
            })
            .filter(|(_, extents, states)| *extents || *states)
            .collect();
        let extents = light.iter().filter(|(_, e, _)| *e).count();
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
        Ok(Refreshed::Tree(TreeRead::Kept {
            events: heard.events,
            reread,
            added,
            extents,
        }))
    }
}

/// How many extents reads are in flight at once.
const IN_FLIGHT: usize = 48;

enum Refreshed {
    Tree(TreeRead),
    Walk(WalkReason),
}

fn senders(facts: &HashMap<Key, Facts>) -> HashSet<&str> {
    facts.keys().map(|(dest, _)| dest.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::{ObjectPath, OwnedValue, Value};

    fn event(sender: &str, path: &str, member: &str, any: Value<'_>) -> zbus::Message {
        let props: HashMap<String, OwnedValue> = HashMap::new();
        zbus::Message::signal(path, "org.a11y.atspi.Event.Object", member)
            .and_then(|b| b.sender(sender))
            .and_then(|b| b.build(&("", 0i32, 0i32, any, props)))
            .expect("a well-formed event")
    }

    fn watched(log: &Mutex<EventLog>, sender: &str) {
        lock(log).dirty.insert(sender.to_owned(), Dirty::default());
    }

    /// What the reader keeps of each event: the node it names (and the descendant an
    /// active-descendant event names), the container of a selection, nothing of an app no
    /// tree is kept for; and past the limit, only that events were lost.
    #[test]
    fn events_mark_the_nodes_they_name_for_the_apps_watched() {
        let log = Mutex::new(EventLog::default());
        watched(&log, ":1.5");
        let none = Value::from(0i32);
        note(&log, &event(":1.5", "/a/1", "StateChanged", none.clone()));
        note(
            &log,
            &event(":1.5", "/a/2", "SelectionChanged", none.clone()),
        );
        let child = Value::from((":1.5", ObjectPath::try_from("/a/9").expect("path")));
        note(
            &log,
            &event(":1.5", "/a/2", "ActiveDescendantChanged", child),
        );
        note(&log, &event(":1.6", "/b/1", "StateChanged", none.clone()));
        let heard = lock(&log).take(&HashSet::from([":1.5", ":1.6"]));
        let keys = |paths: &[&str]| -> HashSet<Key> {
            paths
                .iter()
                .map(|p| (":1.5".to_owned(), (*p).to_owned()))
                .collect()
        };
        assert_eq!(heard.nodes, keys(&["/a/1", "/a/2", "/a/9"]));
        assert_eq!(heard.selections, keys(&["/a/2"]));
        assert_eq!(
            heard.events,
            4 - 1,
            "the unwatched app's event is not counted"
        );
        assert!(!heard.overflowed);
        // Taken once: the next take is empty.
        let again = lock(&log).take(&HashSet::from([":1.5"]));
        assert!(again.nodes.is_empty() && again.events == 0);
        for i in 0..=MAX_DIRTY {
            note(
                &log,
                &event(":1.5", &format!("/n/{i}"), "TextChanged", none.clone()),
            );
        }
        let heard = lock(&log).take(&HashSet::from([":1.5"]));
        assert!(heard.overflowed && heard.nodes.is_empty());
    }

    /// A reply releases the round trip waiting on its serial, and only that one.
    #[test]
    fn a_reply_releases_the_round_trip_that_waits_on_it() {
        let log = Mutex::new(EventLog::default());
        let call = zbus::Message::method_call("/", "Ping")
            .and_then(|b| b.destination(":1.5"))
            .and_then(|b| b.interface("org.freedesktop.DBus.Peer"))
            .and_then(|b| b.build(&()))
            .expect("a call");
        let other = zbus::Message::method_call("/", "Ping")
            .and_then(|b| b.destination(":1.5"))
            .and_then(|b| b.build(&()))
            .expect("another call");
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let (tx2, mut rx2) = tokio::sync::oneshot::channel();
        lock(&log)
            .barriers
            .insert(call.primary_header().serial_num(), tx);
        lock(&log)
            .barriers
            .insert(other.primary_header().serial_num(), tx2);
        let reply = zbus::Message::method_return(&call.header())
            .and_then(|b| b.build(&()))
            .expect("a reply");
        note(&log, &reply);
        assert!(rx.try_recv().is_ok());
        assert!(rx2.try_recv().is_err());
        assert_eq!(lock(&log).barriers.len(), 1);
    }
}
