//! The events that keep trees between steps: a listener on the accessibility bus that
//! notes, per app, which nodes the toolkit said changed, and the trees kept between steps.
//!
//! This module owns the events' connection and what it heard, and where kept trees are
//! stored; it reads no node itself and must not decide when a tree is walked (that is
//! `kept`).

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use zbus::message::Type as MessageType;

use crate::observe::facts::{Facts, Key};

/// The events that say a node changed, or moved (bounds-changed; a scroll bar's value).
const EVENTS: [&str; 7] = [
    "object:children-changed",
    "object:state-changed",
    "object:property-change",
    "object:text-changed",
    "object:active-descendant-changed",
    "object:selection-changed",
    "object:bounds-changed",
];

/// Past this many changed nodes of one app between two observations, the events are not kept
/// and the next observation walks the tree whole.
const MAX_DIRTY: usize = 4096;
/// How long registering the events may take before the listener gives up.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// After the listener failed to start, how long trees are walked whole before it is tried
/// again (the registry may still have been starting).
const RETRY_LISTENER: Duration = Duration::from_secs(30);
/// At most this many apps' trees are kept; the least recently observed is dropped.
pub(crate) const MAX_KEPT: usize = 16;

/// The kept trees of one accessibility bus, shared by every handle to it.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    pub(crate) listener: tokio::sync::Mutex<Option<Arc<Listener>>>,
    /// When the listener last failed to start (no refresh is possible until it is retried).
    failed_at: Mutex<Option<Instant>>,
    pub(crate) trees: tokio::sync::Mutex<HashMap<String, KeptTree>>,
}

/// One app's tree as last read.
#[derive(Debug)]
pub(crate) struct KeptTree {
    pub(crate) facts: HashMap<Key, Facts>,
    pub(crate) trust_showing: bool,
    /// See `Toolkit::announces_moves`: only extents that can have changed are read again.
    pub(crate) announces_moves: bool,
    pub(crate) walked_at: Instant,
    pub(crate) used_at: Instant,
    /// Refreshes since the tree was walked.
    pub(crate) refreshes: u32,
    /// A refresh began and has not finished: the tree is half updated.
    pub(crate) refreshing: bool,
    /// The listener's epoch when the tree was walked: another means events were lost.
    pub(crate) epoch: u64,
}

/// The connection events arrive on, and what they said since each app was last observed.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) conn: zbus::Connection,
    pub(crate) log: Arc<Mutex<EventLog>>,
    pub(crate) epoch: u64,
    /// The task reading the events; it ends with the listener, and so does its connection.
    pub(crate) reader: tokio::task::AbortHandle,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[derive(Debug, Default)]
pub(crate) struct EventLog {
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
    /// Nodes that moved or changed size, or whose value changed (a scroll bar's moves the
    /// view beside it): the extents below them are read again.
    moved: HashSet<String>,
    events: usize,
    overflowed: bool,
}

/// What the events of some senders said: nodes to read again, and containers whose
/// children's states to read again.
#[derive(Debug, Default)]
pub(crate) struct Heard {
    pub(crate) nodes: HashSet<Key>,
    pub(crate) selections: HashSet<Key>,
    pub(crate) moved: HashSet<Key>,
    pub(crate) events: usize,
    pub(crate) overflowed: bool,
}

impl EventLog {
    /// Forgets what every watched sender said, as if it had been lost.
    pub(crate) fn forget(&mut self) {
        for dirty in self.dirty.values_mut() {
            *dirty = Dirty::default();
        }
    }

    /// What `senders` said since the last take: the nodes named, how many events, and
    /// whether some were not kept.
    pub(crate) fn take(&mut self, senders: &HashSet<&str>) -> Heard {
        let mut heard = Heard::default();
        for sender in senders {
            // A sender not watched (a plug added since the walk) or named by a well-known name
            // (events carry unique names) said nothing that can be heard: as if lost.
            if !sender.starts_with(':') {
                heard.overflowed = true;
            }
            let Some(d) = self.dirty.get_mut(*sender) else {
                heard.overflowed = true;
                continue;
            };
            {
                let d = std::mem::take(d);
                heard.events += d.events;
                heard.overflowed |= d.overflowed;
                let key = |p: String| ((*sender).to_owned(), p);
                heard.nodes.extend(d.paths.into_iter().map(key));
                heard.selections.extend(d.selections.into_iter().map(key));
                heard.moved.extend(d.moved.into_iter().map(key));
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
        // The stream is taken before the match is added, so no event falls between, and read
        // from the start: a full queue would stop the connection, the registry's replies too.
        let mut stream = zbus::MessageStream::from(&conn);
        let log = Arc::new(Mutex::new(EventLog::default()));
        let reader_log = log.clone();
        let reader = tokio::spawn(async move {
            while let Some(message) = stream.next().await {
                let Ok(message) = message else { continue };
                note(&reader_log, &message);
            }
            let mut log = lock(&reader_log);
            log.closed = true;
            // Round trips still waiting fail now, not at their timeout.
            log.barriers.clear();
            tracing::info!("the accessibility event stream ended; trees are walked whole");
        });
        let register = async {
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
            Ok::<_, String>(())
        };
        let registered = tokio::time::timeout(REGISTER_TIMEOUT, register)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the registry did not answer in {REGISTER_TIMEOUT:?}"
                ))
            });
        if let Err(e) = registered {
            reader.abort();
            return Err(e);
        }
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
    pub(crate) fn watch<'a>(&self, senders: impl IntoIterator<Item = &'a str>) {
        let mut log = lock(&self.log);
        for sender in senders {
            log.dirty.insert(sender.to_owned(), Dirty::default());
        }
    }

    pub(crate) fn unwatch(&self, senders: &HashSet<&str>) {
        let mut log = lock(&self.log);
        for sender in senders {
            log.dirty.remove(*sender);
        }
    }

    /// A round trip to `dest` over the events' connection. The app's reply leaves it after
    /// every event it sent before, and the bus keeps one sender's messages in order, so once
    /// the reply is read every such event has been counted. Fails with `None` when the app
    /// did not answer within `timeout`.
    pub(crate) async fn sync(
        &self,
        dest: &str,
        timeout: Duration,
    ) -> std::result::Result<(), Option<String>> {
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

pub(crate) fn lock(log: &Mutex<EventLog>) -> std::sync::MutexGuard<'_, EventLog> {
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
            let path = path.as_str().to_owned();
            match header.member().map(|m| m.as_str()) {
                // Only where it is now: its facts are as they were.
                Some("BoundsChanged") => {
                    dirty.moved.insert(path);
                }
                // Its children moved up or down as well.
                Some("ChildrenChanged") => {
                    dirty.moved.insert(path.clone());
                    dirty.paths.insert(path);
                }
                Some("PropertyChange") => {
                    if event_body(message).is_some_and(|(kind, _)| kind == "accessible-value") {
                        dirty.moved.insert(path.clone());
                    }
                    dirty.paths.insert(path);
                }
                Some("SelectionChanged") => {
                    dirty.selections.insert(path.clone());
                    dirty.paths.insert(path);
                }
                // The descendant that became active is named in the event, and may itself
                // send nothing.
                Some("ActiveDescendantChanged") => {
                    if let Some((dest, child)) = event_object(message)
                        && dest == sender.as_str()
                    {
                        dirty.paths.insert(child);
                    }
                    dirty.paths.insert(path);
                }
                _ => {
                    dirty.paths.insert(path);
                }
            }
            if dirty.paths.len() + dirty.selections.len() + dirty.moved.len() > MAX_DIRTY {
                dirty.paths.clear();
                dirty.selections.clear();
                dirty.moved.clear();
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
    let (_, any) = event_body(message)?;
    let (dest, path) = <(String, zbus::zvariant::OwnedObjectPath)>::try_from(any).ok()?;
    Some((dest, path.as_str().to_owned()))
}

/// An event's kind (`accessible-value`, `add`, `focused`) and its `any_data`.
fn event_body(message: &zbus::Message) -> Option<(String, zbus::zvariant::OwnedValue)> {
    use zbus::zvariant::OwnedValue;
    let body = message.body();
    body.deserialize::<(String, i32, i32, OwnedValue, HashMap<String, OwnedValue>)>()
        .map(|(kind, _, _, any, _)| (kind, any))
        .or_else(|_| {
            body.deserialize::<(String, i32, i32, OwnedValue)>()
                .map(|(kind, _, _, any)| (kind, any))
        })
        .ok()
}

impl Kept {
    /// The running listener, started (or restarted) if need be; `None` where the bus gives
    /// no events.
    pub(crate) async fn listener(&self, address: &str) -> Option<Arc<Listener>> {
        let failed = |at: &Mutex<Option<Instant>>| *at.lock().unwrap_or_else(|e| e.into_inner());
        if failed(&self.failed_at).is_some_and(|at| at.elapsed() < RETRY_LISTENER) {
            return None;
        }
        let mut slot = self.listener.lock().await;
        if let Some(l) = slot.as_ref()
            && l.alive()
        {
            return Some(l.clone());
        }
        let started = Listener::start(address).await;
        let mut failed_at = self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        match started {
            Ok(l) => {
                *failed_at = None;
                *slot = Some(l.clone());
                Some(l)
            }
            Err(e) => {
                tracing::warn!(
                    "no accessibility events ({e}); trees are walked whole, and events tried \
                     again in {RETRY_LISTENER:?}"
                );
                *failed_at = Some(Instant::now());
                None
            }
        }
    }
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
        let heard = lock(&log).take(&HashSet::from([":1.5"]));
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
        // A sender not watched, or named by a well-known name, cannot be heard: as if lost.
        assert!(lock(&log).take(&HashSet::from([":1.6"])).overflowed);
        watched(&log, "org.example.Plug");
        assert!(
            lock(&log)
                .take(&HashSet::from(["org.example.Plug"]))
                .overflowed
        );
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
