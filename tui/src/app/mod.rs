//! The console's state and its pure event handling: [`App::update`] takes an
//! [`AppEvent`] (a key, new cache data, a health change, an action's outcome, a console
//! log, lock owners, a quota, a clock tick) and returns what the runtime must do
//! ([`Command`]); [`App::render`] draws the state. Neither does I/O, so both are tested
//! with plain events and a test backend.
//!
//! * this module: the state, the data events, the derived models (rows, problems,
//!   Overview) rebuilt only when their inputs changed.
//! * [`input`]: what each key does in each [`Mode`].
//! * [`operate`]: the operator actions (marks, confirmation, batches), jumping from a
//!   problem to its record, the console log of a node.
//! * [`inspector`]: the inspections on a thread of their own (the running console).

mod input;
pub mod inspector;
mod operate;

use std::collections::BTreeMap;
use std::sync::Arc;

use nodepool_shared::diagnostics::{inspect, Inputs, LockOwners, Problem, ProviderFacts};
use nodepool_shared::model::{NodeId, ZkPath};
use nodepool_shared::zk::{CacheEvent, CachedNode, Change, ConnectionState, SyncState};
use ratatui::Frame;

use crate::actions::{Action, ActionOutcome};
use crate::data::{ConfigInfo, Health, Quota, RecordKey, Snapshot};
use crate::history::History;
use crate::incremental::Tracked;
use crate::input::TextInput;
use crate::rows::{Rows, Ties};
use crate::table::{Tab, ViewState};
use crate::tally::NodeTally;
use crate::theme::Tone;
use crate::views::overview::{self, OverviewModel, Sources};
use crate::views::{nodes, ViewData, ViewKind};

pub use operate::{describe_many, Batch};

/// Seconds a result message stays on the bottom line.
pub const MESSAGE_SECONDS: f64 = 30.0;
/// The problems are recomputed at least this often (their ages change).
pub const PROBLEMS_SECONDS: f64 = 5.0;
/// Lines of console log asked for.
pub const CONSOLE_LINES: u32 = 1000;

/// The console log pane of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleLog {
    /// The node.
    pub node: NodeId,
    /// Lines scrolled.
    pub scroll: usize,
    /// What is shown.
    pub text: ConsoleText,
}

/// The content of the console log pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleText {
    /// Asked for, no answer yet.
    Loading,
    /// The log, cleaned for the terminal, as lines.
    Lines(Vec<String>),
    /// Why there is no log.
    Unavailable(String),
}

/// What is on top of the tab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The tab.
    Normal,
    /// Typing the filter of the current tab.
    Filter,
    /// The help overlay, scrolled by this many lines.
    Help(usize),
    /// The detail pane of a record, scrolled by this many lines.
    Detail(RecordKey, usize),
    /// The console log of a node's server.
    Console(ConsoleLog),
    /// Waiting for confirmation of these actions (one, or one per marked row).
    Confirm(Vec<Action>),
    /// Typing the comment of a hold of these nodes.
    HoldComment(Vec<NodeId>, TextInput),
}

/// Something that happened.
#[derive(Clone, Debug)]
pub enum AppEvent {
    /// A key press.
    Key(ratatui::crossterm::event::KeyEvent),
    /// New cache contents.
    Data(Snapshot),
    /// New connection / cache status.
    Health(Health),
    /// A change applied by the cache (for "last event").
    Cache(CacheEvent),
    /// An action finished.
    Outcome(ActionOutcome),
    /// The console log of a node's server arrived (or why not).
    Console(NodeId, Result<String, String>),
    /// The owners of the lock contenders were read.
    LockOwners(LockOwners),
    /// A provider's cloud quota was read.
    Quota(String, Quota),
    /// The clock (float epoch seconds).
    Tick(f64),
    /// A failure outside any action (e.g. the connection), shown on the bottom line.
    Error(String),
    /// The problems found by the [`inspector`] (with the clock they were measured at).
    Problems(f64, Vec<Problem>),
}

/// The console log to fetch.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsoleRequest {
    /// The node.
    pub node: NodeId,
    /// Its server (the node's `external_id`).
    pub server: String,
    /// Its provider from the config.
    pub provider: ProviderFacts,
    /// Last lines wanted.
    pub lines: u32,
}

/// What the runtime must do after an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Restore the terminal and exit.
    Quit,
    /// Run the actions in the background and send back each outcome.
    Run(Vec<Action>),
    /// Fetch a console log and send it back.
    FetchConsole(ConsoleRequest),
}

/// A line for the bottom of the screen.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The text.
    pub text: String,
    /// Its colour.
    pub tone: Tone,
    /// When it was set.
    pub at: f64,
}

/// Options fixed at start.
#[derive(Clone, Debug, Default)]
pub struct AppOptions {
    /// ZooKeeper hosts for the status line.
    pub hosts: String,
    /// Disable actions.
    pub read_only: bool,
    /// Facts from `nodepool.yaml`.
    pub config: ConfigInfo,
    /// The clock at start (float epoch seconds).
    pub now: f64,
}

/// The console state.
#[derive(Debug)]
pub struct App {
    pub(crate) view: ViewKind,
    /// One per [`ViewKind::ALL`].
    pub(crate) tabs: Vec<Tab>,
    pub(crate) snapshot: Snapshot,
    pub(crate) config: ConfigInfo,
    pub(crate) health: Health,
    pub(crate) now: f64,
    pub(crate) mode: Mode,
    pub(crate) message: Option<Message>,
    pub(crate) last_event: Option<(String, f64)>,
    pub(crate) read_only: bool,
    pub(crate) running: Vec<Action>,
    pub(crate) batches: Vec<Batch>,
    /// Refusals shown in the confirmation dialog of marked rows.
    pub(crate) confirm_notes: Vec<String>,
    /// The connection came back after a suspension or a session loss (the status line
    /// then says "reconnected").
    pub(crate) recovered: bool,
    /// Rows of the table on screen at the last render (page size).
    pub(crate) page: usize,
    /// Lines of the pane / help at the last render (for scrolling bounds).
    pub(crate) pane_lines: usize,
    pub(crate) pane_height: usize,
    pub(crate) history: History,
    pub(crate) problems: Vec<Problem>,
    problems_at: f64,
    /// New data arrived since the problems were computed (they are computed again on
    /// the next clock tick).
    problems_stale: bool,
    pub(crate) lock_owners: Option<Arc<LockOwners>>,
    /// Runs the inspections off the UI thread; `None` = inline.
    inspector: Option<inspector::Inspector>,
    /// An inspection is running on the inspector.
    inspecting: bool,
    pub(crate) quotas: BTreeMap<String, Quota>,
    pub(crate) overview: OverviewModel,
    overview_dirty: bool,
    /// The nodes the nodes tab's rows were built from.
    node_rows: Tracked<CachedNode>,
    /// The snapshot's nodes counted (for the Overview and the history).
    pub(crate) tally: NodeTally,
}

impl App {
    /// A console with no data yet.
    pub fn new(opts: AppOptions) -> App {
        let mut app = App {
            view: ViewKind::Overview,
            tabs: vec![Tab::default(); ViewKind::ALL.len()],
            snapshot: Snapshot::default(),
            config: opts.config,
            health: Health {
                hosts: opts.hosts,
                connection: nodepool_shared::zk::SessionStatus {
                    state: ConnectionState::Suspended,
                    generation: 0,
                },
                cache: nodepool_shared::zk::CacheStatus {
                    state: SyncState::Loading,
                    session_generation: 0,
                    loads: 0,
                    last_error: None,
                },
                changes: 0,
            },
            now: opts.now,
            mode: Mode::Normal,
            message: None,
            last_event: None,
            read_only: opts.read_only,
            running: Vec::new(),
            batches: Vec::new(),
            confirm_notes: Vec::new(),
            recovered: false,
            page: 20,
            pane_lines: 0,
            pane_height: 20,
            history: History::new(opts.now),
            problems: Vec::new(),
            problems_at: f64::MIN,
            problems_stale: false,
            lock_owners: None,
            inspector: None,
            inspecting: false,
            quotas: BTreeMap::new(),
            overview: OverviewModel::default(),
            overview_dirty: true,
            node_rows: Tracked::default(),
            tally: NodeTally::default(),
        };
        app.ensure_rows();
        app
    }

    // ------------------------------------------------------------------ accessors

    /// The current tab.
    pub fn view(&self) -> ViewKind {
        self.view
    }

    /// The current mode.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The bottom-line message, if any.
    pub fn message(&self) -> Option<&Message> {
        self.message.as_ref()
    }

    /// The state of the current tab.
    pub fn state(&self) -> &ViewState {
        &self.tab().state
    }

    pub(crate) fn tab(&self) -> &Tab {
        &self.tabs[self.view.index()]
    }

    pub(crate) fn tab_mut(&mut self) -> &mut Tab {
        &mut self.tabs[self.view.index()]
    }

    /// The key of the selected row of the current tab.
    pub fn selected(&self) -> Option<&RecordKey> {
        self.tab().selected().map(|r| &r.key)
    }

    /// Keys of the visible rows of the current tab, in order.
    pub fn visible_keys(&mut self) -> Vec<RecordKey> {
        self.ensure_rows();
        let r = &self.tab().rows;
        r.visible_rows().map(|row| row.key.clone()).collect()
    }

    /// The connection / cache status shown.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Actions in flight.
    pub fn running(&self) -> &[Action] {
        &self.running
    }

    /// The problems found (errors first).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The problem of the selected row of the Problems tab.
    pub fn selected_problem(&self) -> Option<&Problem> {
        let tab = &self.tabs[ViewKind::Problems.index()];
        tab.selected_index().and_then(|i| self.problems.get(i))
    }

    // ------------------------------------------------------------------ update

    /// Handles one event; returns what the runtime must do.
    pub fn update(&mut self, event: AppEvent) -> Option<Command> {
        match event {
            AppEvent::Key(k) if crate::keys::is_press(&k) => return self.on_key(k),
            AppEvent::Key(_) => {}
            AppEvent::Data(s) => self.on_data(s),
            AppEvent::Health(h) => self.on_health(h),
            AppEvent::Cache(e) => self.last_event = Some((describe_event(&e), self.now)),
            AppEvent::Outcome(o) => self.on_outcome(o),
            AppEvent::Console(node, result) => self.on_console(node, result),
            AppEvent::LockOwners(owners) => {
                self.lock_owners = Some(Arc::new(owners));
                self.recompute_problems();
            }
            AppEvent::Quota(provider, q) => {
                self.quotas.insert(provider, q);
                self.overview_dirty = true;
            }
            AppEvent::Error(text) => self.say(text, Tone::Bad),
            AppEvent::Tick(now) => self.on_tick(now),
            AppEvent::Problems(at, problems) => {
                self.inspecting = false;
                self.set_problems(at, problems);
            }
        }
        None
    }

    fn on_data(&mut self, s: Snapshot) {
        let old = std::mem::replace(&mut self.snapshot, s);
        let changed = self.tally.update(&old.nodes, &self.snapshot.nodes);
        self.history
            .observe_changes(&self.snapshot, &self.config, self.now, &self.tally, changed);
        self.tabs.iter_mut().for_each(|t| t.dirty = true);
        // The inspections look at every record (15–20 ms at 100,000 nodes): the first
        // change after a clock tick runs them at once, a burst of changes within the
        // same second only once more, at the next tick (also while the inspector is
        // still busy with an earlier one).
        if self.problems_at < self.now {
            self.recompute_problems();
        } else {
            self.problems_stale = true;
            self.overview_dirty = true;
        }
        self.ensure_rows();
    }

    fn on_tick(&mut self, now: f64) {
        self.now = now;
        self.history.advance(now);
        self.overview_dirty = true;
        if self.problems_stale || now - self.problems_at >= PROBLEMS_SECONDS {
            self.recompute_problems();
        }
        if self
            .message
            .as_ref()
            .is_some_and(|m| now - m.at > MESSAGE_SECONDS && self.running.is_empty())
        {
            self.message = None;
        }
    }

    /// Runs the inspections from now on on a thread of their own, which answers on
    /// `tx` ([`AppEvent::Problems`]); the running console does this, tests do not.
    pub fn inspect_in_background(&mut self, tx: tokio::sync::mpsc::UnboundedSender<AppEvent>) {
        match inspector::Inspector::start(tx) {
            Ok(i) => self.inspector = Some(i),
            Err(e) => self.say(
                format!("cannot start the inspection thread ({e}): inspecting inline"),
                Tone::Bad,
            ),
        }
    }

    /// Runs the inspections again (new data, new lock owners, or time passed): inline,
    /// or handed to the inspector, whose answer comes as [`AppEvent::Problems`].
    fn recompute_problems(&mut self) {
        if self.inspecting {
            self.problems_stale = true;
            return;
        }
        if let Some(inspector) = &self.inspector {
            let job = inspector::InspectJob {
                snapshot: self.snapshot.clone(),
                config: self.config.clone(),
                now: self.now,
                lock_owners: self.lock_owners.clone(),
                below_min_ready: self.history.below_min_ready().clone(),
            };
            if inspector.submit(job) {
                self.inspecting = true;
                self.problems_at = self.now;
                self.problems_stale = false;
                return;
            }
            // The thread is gone (it panicked): inspect inline from now on.
            self.inspector = None;
        }
        let mut inputs = Inputs::new(&self.snapshot, &self.config, self.now);
        inputs.lock_owners = self.lock_owners.as_deref();
        inputs.below_min_ready = Some(self.history.below_min_ready());
        let problems = inspect(&inputs);
        self.problems_stale = false;
        self.set_problems(self.now, problems);
    }

    /// The problems found at `at`.
    fn set_problems(&mut self, at: f64, problems: Vec<Problem>) {
        self.problems_at = self.problems_at.max(at);
        if problems != self.problems {
            self.problems = problems;
            self.tabs[ViewKind::Problems.index()].dirty = true;
        }
        self.overview_dirty = true;
    }

    pub(crate) fn say(&mut self, text: String, tone: Tone) {
        self.message = Some(Message {
            text,
            tone,
            at: self.now,
        });
    }

    fn on_health(&mut self, h: Health) {
        let before = self.health.connection;
        let after = h.connection;
        if before.generation != 0 && before != after {
            if after.state == ConnectionState::Connected {
                self.recovered = true;
            }
            match after.state {
                ConnectionState::Suspended => self.say(
                    "ZooKeeper connection suspended: reconnecting (the session may survive)…"
                        .into(),
                    Tone::Busy,
                ),
                ConnectionState::Lost => self.say(
                    "ZooKeeper session lost: building a new session…".into(),
                    Tone::Bad,
                ),
                ConnectionState::Connected if after.generation > before.generation => self.say(
                    format!(
                        "Reconnected: new ZooKeeper session #{}; reloading the cache",
                        after.generation
                    ),
                    Tone::Good,
                ),
                ConnectionState::Connected => {
                    self.say("Reconnected to ZooKeeper (same session)".into(), Tone::Good)
                }
                ConnectionState::Closed => self.say("ZooKeeper client closed".into(), Tone::Bad),
            }
        }
        self.health = h;
    }

    /// Rebuilds the current tab's rows if the data changed (re-filtered and sorted),
    /// and the Overview's model when it is shown.
    pub(crate) fn ensure_rows(&mut self) {
        let view = self.view;
        let i = view.index();
        if self.tabs[i].dirty && view == ViewKind::Nodes {
            self.sync_node_rows();
        } else if self.tabs[i].dirty {
            let data = ViewData {
                snapshot: &self.snapshot,
                config: &self.config,
                problems: &self.problems,
            };
            let rows = view.rows(&data);
            self.tabs[i].set_rows(rows, view.columns().len());
        }
        if view == ViewKind::Overview && self.overview_dirty {
            self.overview = overview::build(&Sources {
                snapshot: &self.snapshot,
                tally: &self.tally,
                config: &self.config,
                history: &self.history,
                quotas: &self.quotas,
                problems: &self.problems,
                now: self.now,
            });
            self.overview_dirty = false;
        }
    }

    /// Brings the nodes tab in step with the snapshot: only the rows of the nodes that
    /// changed are rebuilt and placed in the shown order ([`crate::incremental`]).
    fn sync_node_rows(&mut self) {
        let tab = &mut self.tabs[ViewKind::Nodes.index()];
        if tab.rows.ties() != Ties::Key {
            tab.rows = Rows::keyed(ViewKind::Nodes.columns().len());
            self.node_rows = Tracked::default();
        }
        self.node_rows.sync(
            &self.snapshot.nodes,
            |a, b| a.id().cmp(b.id()),
            nodes::node_row,
            &mut tab.rows,
            &mut tab.state,
        );
        tab.dirty = false;
    }

    pub(crate) fn refresh(&mut self) {
        self.tab_mut().refresh();
    }

    // ------------------------------------------------------------------ render

    /// Draws the whole screen.
    pub fn render(&mut self, frame: &mut Frame) {
        self.ensure_rows();
        crate::ui::render(self, frame);
    }
}

/// "node 0000000042 updated" and the like.
pub fn describe_event(e: &CacheEvent) -> String {
    let what = match &e.path {
        ZkPath::Node(id) => format!("node {id}"),
        ZkPath::NodeLock(id, _) => format!("lock of node {id}"),
        ZkPath::Request(id) => format!("request {id}"),
        ZkPath::RequestLock(id, _) => format!("lock of request {id}"),
        ZkPath::Image(i) => format!("image {i}"),
        ZkPath::Pause(i) => format!("pause of {i}"),
        ZkPath::RequestBuild(i) => format!("build request of {i}"),
        ZkPath::Build(i, b) => format!("build {i}-{b}"),
        ZkPath::Upload {
            image,
            provider,
            upload_id,
            ..
        } => format!("upload {image}/{provider}/{upload_id}"),
        ZkPath::Component(k, n) => format!("{k} {n}"),
        ZkPath::Other => "cache".to_string(),
    };
    let how = match e.change {
        Change::Added => "added",
        Change::Updated => "updated",
        Change::Removed => "removed",
        Change::Resynced => "reloaded",
    };
    format!("{what} {how}")
}
