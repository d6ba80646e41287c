//! The operator's doings: marking rows, turning an action key into actions on the
//! selected or the marked records (each checked against the cache first, refusals
//! listed), one confirmation for all of them, following their outcomes as one batch;
//! jumping from a problem to its record; opening a node's console log.

use nodepool_shared::cloud::console::sanitize;
use nodepool_shared::model::NodeId;

use super::{App, Command, ConsoleLog, ConsoleRequest, ConsoleText, Mode, CONSOLE_LINES};
use crate::actions::{precheck, Action, ActionOutcome};
use crate::data::RecordKey;
use crate::input::TextInput;
use crate::keys::Intent;
use crate::theme::Tone;
use crate::views::ViewKind;

/// Actions started together (one confirmation) and how they ended so far.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// What the batch does, e.g. `delete 3 nodes`.
    pub what: String,
    /// Actions not finished yet.
    pub pending: Vec<Action>,
    /// Finished well.
    pub done: usize,
    /// Failed, with the error text.
    pub failed: Vec<String>,
}

/// (verb, noun) of an action, for `delete 3 nodes`.
fn verb_noun(a: &Action) -> (&'static str, &'static str) {
    match a {
        Action::DeleteNode(_) => ("delete", "node"),
        Action::HoldNode { .. } => ("hold", "node"),
        Action::UnholdNode(_) => ("release the hold of", "node"),
        Action::DeleteBuild(..) => ("delete", "build"),
        Action::DeleteUpload(_) => ("delete", "upload"),
        Action::PauseImage(_) => ("pause", "image"),
        Action::UnpauseImage(_) => ("unpause", "image"),
        Action::RequestBuild(_) => ("request a build of", "image"),
    }
}

/// `delete node 0000000042` for one action, `delete 3 nodes` for several.
pub fn describe_many(actions: &[Action]) -> String {
    match actions {
        [one] => one.describe(),
        [] => "nothing".to_string(),
        [first, ..] => {
            let (verb, noun) = verb_noun(first);
            format!("{verb} {} {noun}s", actions.len())
        }
    }
}

impl App {
    /// Space: marks or unmarks the selected row and moves down.
    pub(super) fn mark(&mut self) {
        if !self.view.markable() {
            self.say(
                "marking works in the nodes, builds and uploads views (1, 3, 4)".into(),
                Tone::Attention,
            );
            return;
        }
        let tab = self.tab_mut();
        if tab.toggle_mark().is_some() {
            tab.rows.move_selection(&mut tab.state, 1);
        }
    }

    /// The records an action key applies to: the marked rows, else the selected one.
    fn targets(&self) -> Vec<RecordKey> {
        let st = &self.tab().state;
        if st.marked.is_empty() {
            self.selected().cloned().into_iter().collect()
        } else {
            st.marked.iter().cloned().collect()
        }
    }

    pub(super) fn hold_actions(&self, ids: &[NodeId], comment: &str) -> Vec<Action> {
        ids.iter()
            .map(|id| Action::HoldNode {
                id: id.clone(),
                comment: comment.to_string(),
            })
            .collect()
    }

    /// Splits actions into those the cache allows and the refusal texts.
    fn precheck_all(&self, actions: Vec<Action>) -> (Vec<Action>, Vec<String>) {
        let mut ok = Vec::new();
        let mut refused = Vec::new();
        for a in actions {
            match precheck(&a, &self.snapshot, &self.config) {
                Ok(()) => ok.push(a),
                Err(e) => refused.push(e),
            }
        }
        (ok, refused)
    }

    pub(super) fn on_action_key(&mut self, intent: Intent) {
        if self.read_only {
            self.say(
                "read-only mode (--read-only): actions are disabled".into(),
                Tone::Attention,
            );
            return;
        }
        let targets = self.targets();
        if targets.is_empty() {
            self.say("nothing selected".into(), Tone::Attention);
            return;
        }
        let actions: Result<Vec<Action>, &str> = match intent {
            Intent::TogglePause | Intent::RequestBuild => {
                self.image_action(intent).map(|a| vec![a])
            }
            _ => targets.iter().map(|k| record_action(intent, k)).collect(),
        };
        let actions = match actions {
            Ok(a) => a,
            Err(why) => {
                self.say(why.to_string(), Tone::Attention);
                return;
            }
        };
        let (ok, refused) = self.precheck_all(actions);
        if ok.is_empty() {
            let why = refused.join("; ");
            self.say(why, Tone::Bad);
            return;
        }
        self.confirm_notes = refused;
        if intent == Intent::Hold {
            let ids = ok
                .iter()
                .filter_map(|a| match a {
                    Action::HoldNode { id, .. } => Some(id.clone()),
                    _ => None,
                })
                .collect();
            self.mode = Mode::HoldComment(ids, TextInput::new());
        } else {
            self.mode = Mode::Confirm(ok);
        }
    }

    /// Pause/unpause or build of the image of the selected build, upload or image.
    fn image_action(&self, intent: Intent) -> Result<Action, &'static str> {
        let image = match self.selected() {
            Some(RecordKey::Build(image, _) | RecordKey::Image(image)) => image.clone(),
            Some(RecordKey::Upload(k)) => k.0.clone(),
            _ => return Err("select an image, build or upload first (views 3, 4, 7)"),
        };
        Ok(if intent == Intent::RequestBuild {
            Action::RequestBuild(image)
        } else if self.snapshot.paused.contains(&image) {
            Action::UnpauseImage(image)
        } else {
            Action::PauseImage(image)
        })
    }

    pub(super) fn start_holds(&mut self, ids: Vec<NodeId>, comment: &str) -> Command {
        let actions = self.hold_actions(&ids, comment);
        self.start(actions)
    }

    pub(super) fn start(&mut self, actions: Vec<Action>) -> Command {
        let what = describe_many(&actions);
        self.say(format!("… {what}"), Tone::Busy);
        self.running.extend(actions.iter().cloned());
        if actions.len() > 1 {
            self.batches.push(Batch {
                what,
                pending: actions.clone(),
                done: 0,
                failed: Vec::new(),
            });
        }
        self.tab_mut().state.marked.clear();
        self.confirm_notes.clear();
        Command::Run(actions)
    }

    pub(super) fn on_outcome(&mut self, o: ActionOutcome) {
        if let Some(p) = self.running.iter().position(|a| *a == o.action) {
            self.running.remove(p);
        }
        let batch = self
            .batches
            .iter()
            .position(|b| b.pending.contains(&o.action));
        let Some(bi) = batch else {
            match o.result {
                Ok(text) => self.say(format!("✔ {text}"), Tone::Good),
                Err(e) => self.say(format!("✘ {} failed: {e}", o.action.describe()), Tone::Bad),
            }
            return;
        };
        let b = &mut self.batches[bi];
        b.pending.retain(|a| *a != o.action);
        match o.result {
            Ok(_) => b.done += 1,
            Err(e) => b.failed.push(e),
        }
        let total = b.done + b.failed.len() + b.pending.len();
        let (text, tone) = if !b.pending.is_empty() {
            (
                format!(
                    "… {}: {} of {total} finished",
                    b.what,
                    total - b.pending.len()
                ),
                Tone::Busy,
            )
        } else if b.failed.is_empty() {
            (format!("✔ {}: all {total} done", b.what), Tone::Good)
        } else {
            (
                format!(
                    "✘ {}: {} done, {} failed: {}",
                    b.what,
                    b.done,
                    b.failed.len(),
                    b.failed.join("; ")
                ),
                Tone::Bad,
            )
        };
        if self.batches[bi].pending.is_empty() {
            self.batches.remove(bi);
        }
        self.say(text, tone);
    }

    /// Enter in the Problems view: shows the problem's first record in its view.
    pub(super) fn jump_to_problem(&mut self) {
        let Some(target) = self
            .selected_problem()
            .and_then(|p| p.records.first().cloned())
        else {
            return;
        };
        let (view, filter) = match &target {
            RecordKey::Node(_) => (ViewKind::Nodes, None),
            RecordKey::Request(_) => (ViewKind::Requests, None),
            RecordKey::Build(..) => (ViewKind::Builds, None),
            RecordKey::Upload(_) => (ViewKind::Uploads, None),
            RecordKey::Label(_) => (ViewKind::Labels, None),
            RecordKey::Component(..) => (ViewKind::Components, None),
            RecordKey::Image(_) => (ViewKind::Images, None),
            RecordKey::Provider(p) | RecordKey::Pool(p, _) => (ViewKind::Components, Some(p)),
            RecordKey::Znode(path) => {
                self.say(
                    format!("{path} is in no view: every reader skips it"),
                    Tone::Attention,
                );
                return;
            }
        };
        let tab = &mut self.tabs[view.index()];
        tab.state.filter = TextInput::with(filter.cloned().unwrap_or_default());
        tab.state.selected_key = Some(target.clone());
        if !tab.dirty {
            // Rows that are up to date are shown again as they are (a dirty tab is
            // rebuilt by the switch, keeping the selection on the key).
            tab.refresh();
        }
        self.switch(view.index());
        if filter.is_some() {
            self.say(
                format!("{}: its pool workers (filtered)", target.describe()),
                Tone::Plain,
            );
        } else if self.selected() != Some(&target) {
            self.say(
                format!("{} is no longer in ZooKeeper", target.describe()),
                Tone::Attention,
            );
        }
    }

    /// `c` in a node's detail: asks the runtime for the console log, or explains why
    /// it cannot be had.
    pub(super) fn open_console(&mut self, node: NodeId) -> Option<Command> {
        let request = self.console_request(&node);
        let (text, command) = match request {
            Ok(r) => (ConsoleText::Loading, Some(Command::FetchConsole(r))),
            Err(why) => (ConsoleText::Unavailable(why), None),
        };
        self.mode = Mode::Console(ConsoleLog {
            node,
            scroll: 0,
            text,
        });
        command
    }

    fn console_request(&self, id: &NodeId) -> Result<ConsoleRequest, String> {
        let node = &self
            .snapshot
            .node(id)
            .ok_or_else(|| format!("node {id} is no longer in ZooKeeper"))?
            .node;
        let server = node
            .external_id()
            .map(str::to_string)
            .ok_or_else(|| format!("node {id} has no server yet (no external id)"))?;
        if !self.config.loaded {
            return Err("Unavailable without a configuration: the console log comes from the node's cloud, through its provider in nodepool.yaml and clouds.yaml. Start nodepool-tui with -c nodepool.yaml.".into());
        }
        let provider = node.provider().unwrap_or_default();
        let facts = self.config.provider(provider).ok_or_else(|| {
            format!("Unavailable: provider {provider} of node {id} is not in the configuration")
        })?;
        Ok(ConsoleRequest {
            node: id.clone(),
            server,
            provider: facts.clone(),
            lines: CONSOLE_LINES,
        })
    }

    pub(super) fn on_console(&mut self, node: NodeId, result: Result<String, String>) {
        let Mode::Console(c) = &mut self.mode else {
            return;
        };
        if c.node != node {
            return;
        }
        c.text = match result {
            Ok(text) => ConsoleText::Lines(sanitize(&text).lines().map(str::to_string).collect()),
            Err(e) => ConsoleText::Unavailable(e),
        };
        // Start at the end: the newest lines matter most.
        c.scroll = usize::MAX;
    }
}

/// The action of `intent` on one record; `Err` explains where it works.
fn record_action(intent: Intent, key: &RecordKey) -> Result<Action, &'static str> {
    match (intent, key) {
        (Intent::Delete, RecordKey::Node(id)) => Ok(Action::DeleteNode(id.clone())),
        (Intent::Delete, RecordKey::Build(i, b)) => Ok(Action::DeleteBuild(i.clone(), b.clone())),
        (Intent::Delete, RecordKey::Upload(k)) => Ok(Action::DeleteUpload(k.clone())),
        (Intent::Delete, _) => Err("delete works on nodes, builds and uploads (views 1, 3, 4)"),
        (Intent::Hold, RecordKey::Node(id)) => Ok(Action::HoldNode {
            id: id.clone(),
            comment: String::new(),
        }),
        (Intent::Unhold, RecordKey::Node(id)) => Ok(Action::UnholdNode(id.clone())),
        _ => Err("hold and unhold work on nodes (view 1)"),
    }
}
