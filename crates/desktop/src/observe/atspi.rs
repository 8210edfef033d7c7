//! Reading accessibility trees over AT-SPI (D-Bus) into accesskit's model.
//!
//! A walk asks each node for its role, name, states, interfaces and children, and then for
//! its extents, text and value where it has those interfaces. The calls for many nodes are in
//! flight at once on one connection, so a walk costs a few round trips per tree level rather
//! than several per node.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atspi::proxy::accessible::AccessibleProxy;
use atspi::proxy::bus::BusProxy;
use atspi::proxy::value::ValueProxy;
use atspi::{Interface, State, StateSet};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;

use crate::error::{DesktopError, Result};
use crate::observe::events::Kept;
use crate::observe::facts::{Facts, Key, ROOT_PATH, Whole, build_tree};
use crate::observe::tree::{AccessTree, AppRef, Truncation};

/// Limits on one walk: a tree can be huge and an app can hang.
#[derive(Debug, Clone, Copy)]
pub struct WalkLimits {
    /// At most this many nodes are read; the walk stops there as [`Truncation::NodeCap`].
    pub max_nodes: usize,
    /// How long the whole walk may take before it stops as [`Truncation::TimeLimit`].
    pub time_limit: Duration,
    /// How long one node's calls may take before the app counts as hung.
    pub call_timeout: Duration,
    /// At most this many characters of a node's text are read.
    pub max_text: i32,
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits {
            max_nodes: 5000,
            time_limit: Duration::from_secs(3),
            call_timeout: Duration::from_secs(2),
            max_text: 4096,
        }
    }
}

const REGISTRY: &str = "org.a11y.atspi.Registry";
const NULL_PATH: &str = "/org/a11y/atspi/null";
/// How many nodes' calls are in flight at once.
const IN_FLIGHT: usize = 48;

/// A connection to the accessibility bus of one desktop session.
///
/// Walks talk to each app over a direct (peer-to-peer) connection when the app offers one
/// (`Application.GetApplicationBusAddress`, which GTK's bridge answers): a walk is bound by
/// the messages the bus daemon routes, and a direct connection takes the daemon out of the path.
#[derive(Clone, Debug)]
pub struct Accessibility {
    conn: zbus::Connection,
    /// Direct connections by app bus name; `None` where the app offers none.
    peers: Arc<tokio::sync::Mutex<HashMap<String, Option<zbus::Connection>>>>,
    /// The app this handle walks over its direct connection.
    peer: Option<(Arc<str>, zbus::Connection)>,
    /// The apps by bus name, kept between observations: a bus name is one app's connection,
    /// so its name and process id hold while it is registered, and asking every app again at
    /// every step would cost a round trip each (and half a second for one that hangs).
    apps: Arc<std::sync::Mutex<HashMap<String, Known>>>,
    /// The bus's address, for connections of its own (the events' listener).
    address: Arc<str>,
    /// The trees kept between observations ([`crate::observe::kept`]).
    kept: Arc<Kept>,
}

/// What is known of the app behind a bus name.
#[derive(Clone, Debug)]
enum Known {
    /// It told its name.
    App(AppRef),
    /// It did not answer in time, at this instant; asked again after [`SILENT_RETRY`].
    Silent(Instant),
}

/// How long an app that did not tell its name is left alone before it is asked again.
const SILENT_RETRY: Duration = Duration::from_secs(5);

fn bus_err(e: impl std::fmt::Display) -> DesktopError {
    DesktopError::NoAccessibilityBus {
        detail: e.to_string(),
    }
}

fn call_err(e: impl std::fmt::Display) -> DesktopError {
    DesktopError::Accessibility(e.to_string())
}

impl Accessibility {
    /// Connects through the session bus at `session_bus` (`None`: `$DBUS_SESSION_BUS_ADDRESS`),
    /// asking it where the accessibility bus is (starting it if need be).
    pub async fn connect(session_bus: Option<&str>) -> Result<Self> {
        let session = match session_bus {
            Some(addr) => zbus::connection::Builder::address(addr)
                .map_err(bus_err)?
                .build()
                .await
                .map_err(bus_err)?,
            None => zbus::Connection::session().await.map_err(bus_err)?,
        };
        let address = BusProxy::new(&session)
            .await
            .map_err(bus_err)?
            .get_address()
            .await
            .map_err(bus_err)?;
        let conn = zbus::connection::Builder::address(address.as_str())
            .map_err(bus_err)?
            .build()
            .await
            .map_err(bus_err)?;
        Ok(Accessibility {
            conn,
            peers: Arc::default(),
            peer: None,
            apps: Arc::default(),
            address: Arc::from(address.as_str()),
            kept: Arc::default(),
        })
    }

    /// The connection that reaches `dest`: the app's direct one during its walk, else the bus.
    fn conn_for(&self, dest: &str) -> &zbus::Connection {
        match &self.peer {
            Some((name, conn)) if **name == *dest => conn,
            _ => &self.conn,
        }
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    pub(crate) fn kept(&self) -> &Kept {
        &self.kept
    }

    /// A handle whose calls to `bus_name` go over that app's direct connection, if it has one.
    pub(crate) async fn with_peer(&self, bus_name: &str) -> Accessibility {
        let mut peers = self.peers.lock().await;
        let peer = match peers.get(bus_name) {
            Some(known) => known.clone(),
            None => {
                let found = self.open_peer(bus_name).await;
                if found.is_none() {
                    tracing::debug!(bus_name, "no direct connection; walking through the bus");
                }
                peers.insert(bus_name.to_owned(), found.clone());
                found
            }
        };
        Accessibility {
            conn: self.conn.clone(),
            peers: self.peers.clone(),
            peer: peer.map(|c| (Arc::from(bus_name), c)),
            apps: self.apps.clone(),
            address: self.address.clone(),
            kept: self.kept.clone(),
        }
    }

    async fn open_peer(&self, bus_name: &str) -> Option<zbus::Connection> {
        let ask = self.raw::<(String,), _>(
            bus_name,
            ROOT_PATH,
            "org.a11y.atspi.Application",
            "GetApplicationBusAddress",
            &(),
        );
        let (address,) = tokio::time::timeout(Duration::from_millis(500), ask)
            .await
            .ok()?
            .ok()?;
        let connect = async {
            zbus::connection::Builder::address(address.as_str())?
                .p2p()
                .build()
                .await
        };
        tokio::time::timeout(Duration::from_secs(1), connect)
            .await
            .ok()?
            .ok()
    }

    async fn proxy(&self, dest: &str, path: &str) -> Result<AccessibleProxy<'static>> {
        AccessibleProxy::builder(self.conn_for(dest))
            .destination(dest.to_owned())
            .map_err(call_err)?
            .path(path.to_owned())
            .map_err(call_err)?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(call_err)
    }

    /// The apps registered on the bus, with their names and process ids, in the registry's
    /// order. One call to the registry; only apps not seen before are asked their name.
    pub async fn applications(&self) -> Result<Vec<AppRef>> {
        let children = tokio::time::timeout(
            Duration::from_secs(5),
            self.raw_children(REGISTRY, ROOT_PATH),
        )
        .await
        .map_err(|_| bus_err("the registry did not answer within 5 s"))?
        .map_err(bus_err)?;
        let now = Instant::now();
        let to_ask: Vec<(String, String)> = {
            let known = self.apps.lock().unwrap_or_else(|e| e.into_inner());
            children
                .iter()
                .filter(|(bus_name, _)| match known.get(bus_name) {
                    Some(Known::App(_)) => false,
                    Some(Known::Silent(at)) => now.duration_since(*at) >= SILENT_RETRY,
                    None => true,
                })
                .cloned()
                .collect()
        };
        let found = if to_ask.is_empty() {
            Vec::new()
        } else {
            self.ask_applications(to_ask).await?
        };
        let mut known = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        // An app still starting may not have its name yet, and the bus may fail to say its
        // process (which focus is matched by): it is listed, not kept, and asked again.
        let mut unnamed = HashMap::new();
        for (bus_name, app) in found {
            match app {
                Some(app) if app.name.is_empty() || app.pid.is_none() => {
                    unnamed.insert(bus_name, app);
                }
                Some(app) => {
                    known.insert(bus_name, Known::App(app));
                }
                None => {
                    known.insert(bus_name, Known::Silent(now));
                }
            }
        }
        // Apps that left the bus are forgotten (a new one never reuses a unique name).
        known.retain(|bus_name, _| children.iter().any(|(b, _)| b == bus_name));
        Ok(children
            .iter()
            .filter_map(|(bus_name, _)| match known.get(bus_name) {
                Some(Known::App(app)) => Some(app.clone()),
                _ => unnamed.remove(bus_name),
            })
            .collect())
    }

    /// Asks each of `children` (bus name, path) its name at once, and the bus its process id;
    /// `None` for an app that does not answer its name within half a second.
    async fn ask_applications(
        &self,
        children: Vec<(String, String)>,
    ) -> Result<Vec<(String, Option<AppRef>)>> {
        let dbus = zbus::fdo::DBusProxy::new(&self.conn)
            .await
            .map_err(call_err)?;
        let lookups = children.into_iter().map(|(bus_name, path)| {
            let dbus = dbus.clone();
            async move {
                let app = async {
                    let proxy = self.proxy(&bus_name, &path).await.ok()?;
                    let name = tokio::time::timeout(Duration::from_millis(500), proxy.name())
                        .await
                        .ok()?
                        .ok()?;
                    let pid = match zbus::names::BusName::try_from(bus_name.as_str()) {
                        Ok(n) => dbus.get_connection_unix_process_id(n).await.ok(),
                        Err(_) => None,
                    };
                    Some(AppRef {
                        name,
                        bus_name: bus_name.clone(),
                        pid,
                    })
                }
                .await;
                (bus_name, app)
            }
        });
        Ok(futures::future::join_all(lookups).await)
    }

    /// The app named `name` (case-insensitive), or an error listing the apps there are.
    pub async fn application(&self, name: &str) -> Result<AppRef> {
        let apps = self.applications().await?;
        apps.iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .cloned()
            .ok_or_else(|| self.unknown_app(name, &apps))
    }

    /// The error for an app named `name` that is not among `apps`, listing those there are.
    pub fn unknown_app(&self, name: &str, apps: &[AppRef]) -> DesktopError {
        let mut names: Vec<&str> = apps
            .iter()
            .map(|a| a.name.as_str())
            .filter(|n| !n.is_empty())
            .collect();
        names.sort_unstable();
        DesktopError::UnknownApp {
            name: name.to_owned(),
            available: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
        }
    }

    /// Waits until an app of that name appears on the bus (apps register a moment after start).
    pub async fn wait_for_application(&self, name: &str, timeout: Duration) -> Result<AppRef> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.application(name).await {
                Ok(app) => return Ok(app),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The app whose window is active, matched by AT-SPI's Active state or else by the
    /// window's process id.
    pub async fn focused_application(&self, window_pid: Option<u32>) -> Result<Option<AppRef>> {
        let apps = self.applications().await?;
        if let Some(app) = self.active_application(&apps).await {
            return Ok(Some(app));
        }
        Ok(window_pid.and_then(|pid| apps.into_iter().find(|a| a.pid == Some(pid))))
    }

    /// The first of `apps` with a window in AT-SPI's Active state. For choosing whose tree to
    /// show when the active X window has no process id; never for the guard, which trusts
    /// only the X server.
    pub async fn active_application(&self, apps: &[AppRef]) -> Option<AppRef> {
        for app in apps {
            let Ok(Ok(windows)) = tokio::time::timeout(
                Duration::from_millis(500),
                self.raw_children(&app.bus_name, ROOT_PATH),
            )
            .await
            else {
                continue;
            };
            for (dest, path) in windows {
                let Ok(p) = self.proxy(&dest, &path).await else {
                    continue;
                };
                if let Ok(Ok(states)) =
                    tokio::time::timeout(Duration::from_millis(500), p.get_state()).await
                    && states.contains(State::Active)
                {
                    return Some(app.clone());
                }
            }
        }
        None
    }

    /// Walks `app`'s tree within `limits`.
    pub async fn snapshot(&self, app: &AppRef, limits: WalkLimits) -> Result<AccessTree> {
        let start = Instant::now();
        let walker = self.with_peer(&app.bus_name).await;
        let whole = walker.read_whole(app, limits).await?;
        let walk_ms = start.elapsed().as_secs_f64() * 1e3;
        let (tree, _) = build_tree(
            app,
            &whole.facts,
            whole.trust_showing,
            whole.truncated,
            walk_ms,
        );
        tracing::debug!(app = %app.name, nodes = tree.len(), walk_ms, "walked tree");
        Ok(tree)
    }

    /// Reads every node of `app`'s tree within `limits`: over its direct connection when
    /// `self` holds one (see [`Self::with_peer`]).
    pub(crate) async fn read_whole(&self, app: &AppRef, limits: WalkLimits) -> Result<Whole> {
        let start = Instant::now();
        // The first question to the app: one that does not answer is reported, not waited on.
        let toolkit = tokio::time::timeout(limits.call_timeout, self.toolkit(&app.bus_name))
            .await
            .map_err(|_| DesktopError::AppNotResponding {
                app: app.name.clone(),
                after_ms: limits.call_timeout.as_millis() as u64,
            })?;
        let mut facts = HashMap::new();
        let root = (app.bus_name.clone(), ROOT_PATH.to_owned());
        let truncated = self
            .read_below(
                app,
                vec![root],
                &mut facts,
                limits,
                start + limits.time_limit,
            )
            .await?;
        Ok(Whole {
            facts,
            truncated,
            trust_showing: toolkit.trust_showing,
            announces_moves: toolkit.announces_moves,
        })
    }

    /// Reads each node of `start`, and every node below them that `facts` does not hold yet,
    /// into `facts`, many nodes' calls in flight at once. Fails only when the app's root
    /// fails (the app is gone or hung); a child that fails is one node lost (apps destroy
    /// widgets while they are read) and is left out.
    pub(crate) async fn read_below(
        &self,
        app: &AppRef,
        start: Vec<Key>,
        facts: &mut HashMap<Key, Facts>,
        limits: WalkLimits,
        deadline: Instant,
    ) -> Result<Option<Truncation>> {
        let root = (app.bus_name.clone(), ROOT_PATH.to_owned());
        let mut truncated = None;
        let mut seen: HashSet<Key> = start.iter().cloned().collect();
        let mut queue: VecDeque<Key> = start.into_iter().collect();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < IN_FLIGHT
                && let Some(key) = queue.pop_front()
            {
                let this = self.clone();
                let timeout = limits.call_timeout;
                in_flight.push(async move {
                    let r =
                        tokio::time::timeout(timeout, this.fetch(&key.0, &key.1, limits.max_text))
                            .await;
                    (key, r)
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let next = match tokio::time::timeout(left, in_flight.next()).await {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(_) => {
                    truncated = Some(Truncation::TimeLimit {
                        limit_ms: limits.time_limit.as_millis() as u64,
                    });
                    break;
                }
            };
            let (key, fetched) = next;
            let node = match fetched {
                Ok(Ok(f)) => f,
                Ok(Err(e)) if key == root => return Err(e),
                Err(_) if key == root => {
                    return Err(DesktopError::AppNotResponding {
                        app: app.name.clone(),
                        after_ms: limits.call_timeout.as_millis() as u64,
                    });
                }
                Ok(Err(e)) => {
                    tracing::debug!(path = %key.1, "node vanished during the walk: {e}");
                    continue;
                }
                Err(_) => {
                    tracing::debug!(path = %key.1, "node did not answer in time");
                    continue;
                }
            };
            for child in &node.children {
                if facts.contains_key(child) || seen.contains(child) {
                    continue;
                }
                if facts.len() + queue.len() + in_flight.len() + 1 >= limits.max_nodes {
                    truncated = Some(Truncation::NodeCap {
                        cap: limits.max_nodes,
                    });
                    break;
                }
                seen.insert(child.clone());
                queue.push_back(child.clone());
            }
            facts.insert(key, node);
        }
        Ok(truncated)
    }

    /// What the app's toolkit is known to do, from its name and version.
    async fn toolkit(&self, dest: &str) -> Toolkit {
        let get = |property: &'static str| async move {
            self.raw::<zbus::zvariant::OwnedValue, _>(
                dest,
                ROOT_PATH,
                "org.freedesktop.DBus.Properties",
                "Get",
                &("org.a11y.atspi.Application", property),
            )
            .await
            .ok()
            .and_then(|v| String::try_from(v).ok())
        };
        let (toolkit, version) = futures::join!(get("ToolkitName"), get("Version"));
        let gtk = toolkit.is_some_and(|t| t.eq_ignore_ascii_case("gtk"));
        let major = |m: &str| gtk && version.as_deref().is_some_and(|v| v.starts_with(m));
        Toolkit {
            trust_showing: !major("4."),
            announces_moves: major("3."),
        }
    }

    /// One node's facts, its interface calls issued together.
    async fn fetch(&self, dest: &str, path: &str, max_text: i32) -> Result<Facts> {
        let proxy = self.proxy(dest, path).await?;
        // Role and children are read raw: the typed replies reject role numbers newer than the
        // crate and children named by well-known bus names (WebKit's socket), or even panic
        // on an empty name.
        // Two waves: the facts every node has, then extents, text and value from the nodes
        // that have those interfaces. A walk is bounded by the bus's message throughput, not
        // by latency (many nodes are in flight at once), so asking only what a node can
        // answer beats asking everything speculatively.
        // Name and child count come in one GetAll, so leaves (most nodes) are never asked
        // for their children.
        let (role, (name, child_count), states, interfaces) = futures::try_join!(
            self.raw_role(dest, path),
            self.name_and_child_count(&proxy, dest, path),
            async { proxy.get_state().await.map_err(call_err) },
            async { proxy.get_interfaces().await.map_err(call_err) },
        )?;
        let extents = async {
            if !interfaces.contains(Interface::Component) {
                return None;
            }
            self.extents(dest, path).await.ok()
        };
        let text = async {
            if !interfaces.contains(Interface::Text) {
                return None;
            }
            self.raw::<String, _>(
                dest,
                path,
                "org.a11y.atspi.Text",
                "GetText",
                &(0i32, max_text),
            )
            .await
            .ok()
        };
        let value = async {
            if !interfaces.contains(Interface::Value) {
                return None;
            }
            let v = ValueProxy::builder(self.conn_for(dest))
                .destination(dest.to_owned())
                .ok()?
                .path(path.to_owned())
                .ok()?
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .ok()?;
            v.current_value().await.ok()
        };
        let children = async {
            if child_count == 0 {
                return Ok::<_, DesktopError>(Vec::new());
            }
            let mut children = self.raw_children(dest, path).await?;
            if children.is_empty() {
                // A plug/socket (WebKit's web view) lists no children but answers by index.
                for i in 0..child_count.min(64) {
                    if let Ok(child) = self.raw_child_at_index(dest, path, i).await
                        && !child.0.is_empty()
                        && child.1 != NULL_PATH
                    {
                        children.push(child);
                    }
                }
            }
            Ok(children)
        };
        let (extents, text, value, children) = futures::join!(extents, text, value, children);
        Ok(Facts {
            role,
            name,
            states,
            interfaces,
            children: children?,
            text,
            value,
            extents,
        })
    }

    /// A node's states.
    pub(crate) async fn states(&self, dest: &str, path: &str) -> Result<StateSet> {
        self.raw_call(dest, path, "GetState").await
    }

    /// A node's extents in screen coordinates (window coordinates on GTK 4).
    pub(crate) async fn extents(&self, dest: &str, path: &str) -> Result<(i32, i32, i32, i32)> {
        self.raw::<(i32, i32, i32, i32), _>(
            dest,
            path,
            "org.a11y.atspi.Component",
            "GetExtents",
            &(0u32,),
        )
        .await
    }

    /// The children a container's `Selection` says are selected, or `None` when it says
    /// more than `max` are (reading them one call each would cost more than what they spare)
    /// or gives a count below zero.
    pub(crate) async fn selected_children(
        &self,
        dest: &str,
        path: &str,
        max: usize,
    ) -> Result<Option<Vec<Key>>> {
        let (count,): (zbus::zvariant::OwnedValue,) = self
            .raw(
                dest,
                path,
                "org.freedesktop.DBus.Properties",
                "Get",
                &("org.a11y.atspi.Selection", "NSelectedChildren"),
            )
            .await?;
        let count = i32::try_from(&count).map_err(call_err)?;
        // A count below zero says nothing about what is selected.
        let Some(count) = usize::try_from(count).ok().filter(|&c| c <= max) else {
            return Ok(None);
        };
        let reads = (0..count).map(|i| async move {
            let (name, child): (String, OwnedObjectPath) = self
                .raw(
                    dest,
                    path,
                    "org.a11y.atspi.Selection",
                    "GetSelectedChild",
                    &(i as i32,),
                )
                .await?;
            Ok::<Key, DesktopError>((name, child.as_str().to_owned()))
        });
        let children = futures::future::try_join_all(reads).await?;
        Ok(Some(children))
    }

    async fn raw<R, B>(
        &self,
        dest: &str,
        path: &str,
        interface: &str,
        method: &str,
        body: &B,
    ) -> Result<R>
    where
        R: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let reply = self
            .conn_for(dest)
            .call_method(Some(dest), path, Some(interface), method, body)
            .await
            .map_err(call_err)?;
        reply.body().deserialize().map_err(call_err)
    }

    async fn raw_call<R>(&self, dest: &str, path: &str, method: &str) -> Result<R>
    where
        R: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
    {
        self.raw(dest, path, "org.a11y.atspi.Accessible", method, &())
            .await
    }

    /// The accessible name and child count in one `Properties.GetAll` (two calls where an
    /// app does not implement GetAll). A count of -1 means unknown: the children are asked.
    async fn name_and_child_count(
        &self,
        proxy: &AccessibleProxy<'static>,
        dest: &str,
        path: &str,
    ) -> Result<(String, i32)> {
        let all = self
            .raw::<(HashMap<String, zbus::zvariant::OwnedValue>,), _>(
                dest,
                path,
                "org.freedesktop.DBus.Properties",
                "GetAll",
                &("org.a11y.atspi.Accessible",),
            )
            .await;
        if let Ok((props,)) = all
            && let Some(name) = props
                .get("Name")
                .and_then(|v| String::try_from(v.clone()).ok())
        {
            let count = props
                .get("ChildCount")
                .and_then(|v| i32::try_from(v).ok())
                .unwrap_or(-1);
            return Ok((name, count));
        }
        let name = proxy.name().await.map_err(call_err)?;
        Ok((name, -1))
    }

    async fn raw_role(&self, dest: &str, path: &str) -> Result<atspi::Role> {
        let number: u32 = self.raw_call(dest, path, "GetRole").await?;
        Ok(atspi::Role::try_from(number).unwrap_or(atspi::Role::Unknown))
    }

    async fn raw_children(&self, dest: &str, path: &str) -> Result<Vec<(String, String)>> {
        let children: Vec<(String, OwnedObjectPath)> =
            self.raw_call(dest, path, "GetChildren").await?;
        Ok(children
            .into_iter()
            .filter(|(name, path)| !name.is_empty() && path.as_str() != NULL_PATH)
            .map(|(name, path)| (name, path.as_str().to_owned()))
            .collect())
    }

    async fn raw_child_at_index(
        &self,
        dest: &str,
        path: &str,
        index: i32,
    ) -> Result<(String, String)> {
        let reply = self
            .conn
            .call_method(
                Some(dest),
                path,
                Some("org.a11y.atspi.Accessible"),
                "GetChildAtIndex",
                &(index,),
            )
            .await
            .map_err(call_err)?;
        let (name, path): (String, OwnedObjectPath) =
            reply.body().deserialize().map_err(call_err)?;
        Ok((name, path.as_str().to_owned()))
    }
}

/// What an app's toolkit is known to do.
#[derive(Debug, Clone, Copy)]
struct Toolkit {
    /// Its SHOWING state means what AT-SPI says. GTK 4 (4.8 seen here) sets it on the window
    /// alone, never on the widgets inside, so on its apps VISIBLE alone tells whether an
    /// element is shown; without this every widget of a GTK 4 app is hidden. The same
    /// toolkit answers screen-coordinate extents with window coordinates.
    trust_showing: bool,
    /// It announces what moves its elements on screen: GTK 3 sends bounds-changed when a
    /// widget's allocation changes and a scroll bar's new value when a view scrolls. A kept
    /// tree of such an app reads again only the extents that can have changed; of any other,
    /// every extent on screen at every step.
    announces_moves: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_bus_is_a_clear_error_naming_the_fix() {
        let err = Accessibility::connect(Some("unix:path=/nonexistent/clawdesk-bus"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, DesktopError::NoAccessibilityBus { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("at-spi2-core") && msg.contains("clawdesk sandbox"),
            "{msg}"
        );
    }
}
