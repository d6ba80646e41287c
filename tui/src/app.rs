//! The console's state and its pure event handling: [`App::update`] takes an
//! [`AppEvent`] (a key, new cache data, a health change, an action's outcome, a clock
//! tick) and returns what the runtime must do ([`Command`]); [`App::render`] draws the
//! state. Neither does I/O, so both are tested with plain events and a test backend.

use nodepool_shared::model::ZkPath;
use nodepool_shared::zk::{CacheEvent, Change, ConnectionState, SyncState};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;

use crate::actions::{precheck, Action, ActionOutcome};
use crate::data::{ConfigInfo, Health, RecordKey, Snapshot};
use crate::keys::{self, Intent};
use crate::table::{scroll_into_view, Rows, ViewState};
use crate::theme::Tone;
use crate::views::ViewKind;

/// Seconds a result message stays on the bottom line.
pub const MESSAGE_SECONDS: f64 = 30.0;

/// What is on top of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The table.
    Normal,
    /// Typing the filter of the current view.
    Filter,
    /// The help overlay, scrolled by this many lines.
    Help(usize),
    /// The detail pane of a record, scrolled by this many lines.
    Detail(RecordKey, usize),
    /// Waiting for confirmation of an action.
    Confirm(Action),
    /// Typing the comment of a hold.
    HoldComment(nodepool_shared::model::NodeId, String),
}

/// Something that happened.
#[derive(Clone, Debug)]
pub enum AppEvent {
    /// A key press.
    Key(KeyEvent),
    /// New cache contents.
    Data(Snapshot),
    /// New connection / cache status.
    Health(Health),
    /// A change applied by the cache (for "last event").
    Cache(CacheEvent),
    /// An action finished.
    Outcome(ActionOutcome),
    /// The clock (float epoch seconds).
    Tick(f64),
    /// A failure outside any action (e.g. the connection), shown on the bottom line.
    Error(String),
}

/// What the runtime must do after an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Restore the terminal and exit.
    Quit,
    /// Run the action in the background and send back its outcome.
    Run(Action),
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
    pub(crate) states: Vec<ViewState>,
    pub(crate) rows: Vec<Rows>,
    dirty: Vec<bool>,
    pub(crate) snapshot: Snapshot,
    pub(crate) config: ConfigInfo,
    pub(crate) health: Health,
    pub(crate) now: f64,
    pub(crate) mode: Mode,
    pub(crate) message: Option<Message>,
    pub(crate) last_event: Option<(String, f64)>,
    pub(crate) read_only: bool,
    pub(crate) running: Vec<Action>,
    /// The connection came back after a suspension or a session loss (the status line
    /// then says "reconnected").
    pub(crate) recovered: bool,
    /// Rows of the table on screen at the last render (page size).
    pub(crate) page: usize,
    /// Lines of the detail pane / help at the last render (for scrolling bounds).
    pub(crate) pane_lines: usize,
    pub(crate) pane_height: usize,
}

impl App {
    /// A console with no data yet.
    pub fn new(opts: AppOptions) -> App {
        let n = ViewKind::ALL.len();
        let mut app = App {
            view: ViewKind::Nodes,
            states: vec![ViewState::default(); n],
            rows: vec![Rows::default(); n],
            dirty: vec![true; n],
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
            recovered: false,
            page: 20,
            pane_lines: 0,
            pane_height: 20,
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
        &self.states[self.view.index()]
    }

    /// The key of the selected row of the current tab.
    pub fn selected(&self) -> Option<&RecordKey> {
        let i = self.view.index();
        self.rows[i].selected_row(&self.states[i]).map(|r| &r.key)
    }

    /// Keys of the visible rows of the current tab, in order.
    pub fn visible_keys(&mut self) -> Vec<RecordKey> {
        self.ensure_rows();
        let r = &self.rows[self.view.index()];
        r.visible.iter().map(|&i| r.rows[i].key.clone()).collect()
    }

    /// The connection / cache status shown.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Actions in flight.
    pub fn running(&self) -> &[Action] {
        &self.running
    }

    // ------------------------------------------------------------------ update

    /// Handles one event; returns what the runtime must do.
    pub fn update(&mut self, event: AppEvent) -> Option<Command> {
        match event {
            AppEvent::Key(k) if keys::is_press(&k) => return self.on_key(k),
            AppEvent::Key(_) => {}
            AppEvent::Data(s) => {
                self.snapshot = s;
                self.dirty.iter_mut().for_each(|d| *d = true);
                self.ensure_rows();
            }
            AppEvent::Health(h) => self.on_health(h),
            AppEvent::Cache(e) => self.last_event = Some((describe_event(&e), self.now)),
            AppEvent::Outcome(o) => {
                if let Some(p) = self.running.iter().position(|a| *a == o.action) {
                    self.running.remove(p);
                }
                match o.result {
                    Ok(text) => self.say(format!("✔ {text}"), Tone::Good),
                    Err(e) => self.say(format!("✘ {} failed: {e}", o.action.describe()), Tone::Bad),
                }
            }
            AppEvent::Error(text) => self.say(text, Tone::Bad),
            AppEvent::Tick(now) => {
                self.now = now;
                if self
                    .message
                    .as_ref()
                    .is_some_and(|m| now - m.at > MESSAGE_SECONDS && self.running.is_empty())
                {
                    self.message = None;
                }
            }
        }
        None
    }

    fn say(&mut self, text: String, tone: Tone) {
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

    /// Rebuilds the current tab's rows if the data changed, and re-filters/sorts them.
    pub(crate) fn ensure_rows(&mut self) {
        let i = self.view.index();
        if self.dirty[i] {
            let rows = self.view.rows(&self.snapshot, &self.config);
            self.rows[i] = Rows::new(rows, self.view.columns().len());
            self.dirty[i] = false;
            self.rows[i].refresh(&mut self.states[i]);
        }
    }

    fn refresh(&mut self) {
        let i = self.view.index();
        self.rows[i].refresh(&mut self.states[i]);
    }

    fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if keys::is_interrupt(&key) {
            return Some(Command::Quit);
        }
        match self.mode.clone() {
            Mode::Normal => self.on_table_key(key),
            Mode::Filter => {
                let st = &mut self.states[self.view.index()];
                match key.code {
                    KeyCode::Esc => {
                        st.filter.clear();
                        self.mode = Mode::Normal;
                    }
                    KeyCode::Enter => self.mode = Mode::Normal,
                    keys::ERASE_KEY => {
                        st.filter.pop();
                    }
                    KeyCode::Char(c) => st.filter.push(c),
                    KeyCode::Down | KeyCode::Up => {
                        self.mode = Mode::Normal;
                        return self.on_table_key(key);
                    }
                    _ => return None,
                }
                self.refresh();
                None
            }
            Mode::Help(scroll) => {
                if keys::closes(&key, true) {
                    self.mode = Mode::Normal;
                } else if let Some(s) = self.scroll(scroll, key) {
                    self.mode = Mode::Help(s);
                }
                None
            }
            Mode::Detail(k, scroll) => {
                if keys::closes(&key, false) {
                    self.mode = Mode::Normal;
                } else if let Some(s) = self.scroll(scroll, key) {
                    self.mode = Mode::Detail(k, s);
                }
                None
            }
            Mode::Confirm(action) => match keys::answer(&key) {
                Some(true) => {
                    self.mode = Mode::Normal;
                    Some(self.start(action))
                }
                Some(false) => {
                    self.mode = Mode::Normal;
                    self.say(format!("cancelled: {}", action.describe()), Tone::Plain);
                    None
                }
                None => None,
            },
            Mode::HoldComment(id, mut text) => match key.code {
                KeyCode::Enter => {
                    self.mode = Mode::Normal;
                    Some(self.start(Action::HoldNode { id, comment: text }))
                }
                KeyCode::Esc => {
                    self.mode = Mode::Normal;
                    self.say(format!("cancelled: hold node {id}"), Tone::Plain);
                    None
                }
                keys::ERASE_KEY => {
                    text.pop();
                    self.mode = Mode::HoldComment(id, text);
                    None
                }
                KeyCode::Char(c) => {
                    text.push(c);
                    self.mode = Mode::HoldComment(id, text);
                    None
                }
                _ => None,
            },
        }
    }

    /// New scroll position of a pane for a movement key; `None` if not a movement key.
    fn scroll(&self, at: usize, key: KeyEvent) -> Option<usize> {
        let max = self.pane_lines.saturating_sub(self.pane_height);
        let page = self.pane_height.max(1);
        let to = match keys::intent(&key)? {
            Intent::Down => at + 1,
            Intent::Up => at.saturating_sub(1),
            Intent::PageDown => at + page,
            Intent::PageUp => at.saturating_sub(page),
            Intent::Home => 0,
            Intent::End => max,
            _ => return None,
        };
        Some(to.min(max))
    }

    fn start(&mut self, action: Action) -> Command {
        self.say(format!("… {}", action.describe()), Tone::Busy);
        self.running.push(action.clone());
        Command::Run(action)
    }

    fn on_table_key(&mut self, key: KeyEvent) -> Option<Command> {
        let intent = keys::intent(&key)?;
        let i = self.view.index();
        let page = self.page.max(1) as isize;
        match intent {
            Intent::Quit => return Some(Command::Quit),
            Intent::ClearFilter => {
                // Never quits: Esc is pressed to close dialogs, often once too often.
                if !self.states[i].filter.is_empty() {
                    self.states[i].filter.clear();
                    self.refresh();
                }
            }
            Intent::Tab(t) => self.switch(t),
            Intent::NextTab => self.switch((i + 1) % ViewKind::ALL.len()),
            Intent::PrevTab => self.switch((i + ViewKind::ALL.len() - 1) % ViewKind::ALL.len()),
            Intent::Down => self.rows[i].move_selection(&mut self.states[i], 1),
            Intent::Up => self.rows[i].move_selection(&mut self.states[i], -1),
            Intent::PageDown => self.rows[i].move_selection(&mut self.states[i], page),
            Intent::PageUp => self.rows[i].move_selection(&mut self.states[i], -page),
            Intent::Home => self.rows[i].select_edge(&mut self.states[i], false),
            Intent::End => self.rows[i].select_edge(&mut self.states[i], true),
            Intent::SortNext | Intent::SortPrev => {
                let n = self.view.columns().len();
                let st = &mut self.states[i];
                st.sort = if intent == Intent::SortNext {
                    (st.sort + 1) % n
                } else {
                    (st.sort + n - 1) % n
                };
                self.refresh();
            }
            Intent::SortFlip => {
                self.states[i].descending = !self.states[i].descending;
                self.refresh();
            }
            Intent::Filter => self.mode = Mode::Filter,
            Intent::Help => self.mode = Mode::Help(0),
            Intent::Detail => {
                if let Some(k) = self.selected().cloned() {
                    self.mode = Mode::Detail(k, 0);
                }
            }
            Intent::Delete
            | Intent::Hold
            | Intent::Unhold
            | Intent::TogglePause
            | Intent::RequestBuild => self.on_action_key(intent),
        }
        let st = &mut self.states[self.view.index()];
        let visible = self.rows[self.view.index()].visible.len();
        scroll_into_view(st, visible, self.page);
        None
    }

    fn switch(&mut self, tab: usize) {
        if let Some(v) = ViewKind::ALL.get(tab) {
            self.view = *v;
            self.ensure_rows();
        }
    }

    /// The image of the selected row (builds, uploads, images).
    fn selected_image(&self) -> Option<String> {
        match self.selected()? {
            RecordKey::Build(image, _) | RecordKey::Image(image) => Some(image.clone()),
            RecordKey::Upload(k) => Some(k.0.clone()),
            _ => None,
        }
    }

    fn on_action_key(&mut self, intent: Intent) {
        if self.read_only {
            self.say(
                "read-only mode (--read-only): actions are disabled".into(),
                Tone::Attention,
            );
            return;
        }
        let selected = self.selected().cloned();
        let action = match (intent, &selected) {
            (Intent::Delete, Some(RecordKey::Node(id))) => Action::DeleteNode(id.clone()),
            (Intent::Delete, Some(RecordKey::Build(i, b))) => {
                Action::DeleteBuild(i.clone(), b.clone())
            }
            (Intent::Delete, Some(RecordKey::Upload(k))) => Action::DeleteUpload(k.clone()),
            (Intent::Hold, Some(RecordKey::Node(id))) => {
                let probe = Action::HoldNode {
                    id: id.clone(),
                    comment: String::new(),
                };
                match precheck(&probe, &self.snapshot, &self.config) {
                    Ok(()) => self.mode = Mode::HoldComment(id.clone(), String::new()),
                    Err(e) => self.say(e, Tone::Bad),
                }
                return;
            }
            (Intent::Unhold, Some(RecordKey::Node(id))) => Action::UnholdNode(id.clone()),
            (Intent::TogglePause | Intent::RequestBuild, _) => {
                let Some(image) = self.selected_image() else {
                    self.say(
                        "select an image, build or upload first (views 3, 4, 7)".into(),
                        Tone::Attention,
                    );
                    return;
                };
                if intent == Intent::RequestBuild {
                    Action::RequestBuild(image)
                } else if self.snapshot.paused.contains(&image) {
                    Action::UnpauseImage(image)
                } else {
                    Action::PauseImage(image)
                }
            }
            (_, None) => {
                self.say("nothing selected".into(), Tone::Attention);
                return;
            }
            (Intent::Delete, _) => {
                self.say(
                    "delete works on nodes, builds and uploads (views 1, 3, 4)".into(),
                    Tone::Attention,
                );
                return;
            }
            _ => {
                self.say(
                    "hold and unhold work on nodes (view 1)".into(),
                    Tone::Attention,
                );
                return;
            }
        };
        match precheck(&action, &self.snapshot, &self.config) {
            Ok(()) => self.mode = Mode::Confirm(action),
            Err(e) => self.say(e, Tone::Bad),
        }
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
