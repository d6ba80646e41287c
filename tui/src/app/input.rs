//! What each key does in each [`Mode`]: keys are decoded only through the tables of
//! [`crate::keys`] (and typed text through [`crate::input::TextInput`]).

use ratatui::crossterm::event::KeyEvent;

use super::{App, Command, ConsoleLog, Mode};
use crate::data::RecordKey;
use crate::input::Edit;
use crate::keys::{self, DetailIntent, Intent};
use crate::table::scroll_into_view;
use crate::theme::Tone;
use crate::views::ViewKind;

impl App {
    pub(super) fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if keys::is_interrupt(&key) {
            return Some(Command::Quit);
        }
        match self.mode.clone() {
            Mode::Normal => self.on_table_key(key),
            Mode::Filter => self.on_filter_key(key),
            Mode::Help(scroll) => {
                if keys::closes(&key, true) {
                    self.mode = Mode::Normal;
                } else if let Some(s) = self.scroll(scroll, key) {
                    self.mode = Mode::Help(s);
                }
                None
            }
            Mode::Detail(k, scroll) => self.on_detail_key(k, scroll, key),
            Mode::Console(c) => {
                if keys::closes(&key, false) {
                    self.mode = Mode::Detail(RecordKey::Node(c.node), 0);
                } else if let Some(s) = self.scroll(c.scroll, key) {
                    self.mode = Mode::Console(ConsoleLog { scroll: s, ..c });
                }
                None
            }
            Mode::Confirm(actions) => match keys::answer(&key) {
                Some(true) => {
                    self.mode = Mode::Normal;
                    Some(self.start(actions))
                }
                Some(false) => {
                    self.mode = Mode::Normal;
                    let what = super::operate::describe_many(&actions);
                    self.say(format!("cancelled: {what}"), Tone::Plain);
                    None
                }
                None => None,
            },
            Mode::HoldComment(ids, mut text) => match text.handle(&key) {
                Edit::Submit => {
                    self.mode = Mode::Normal;
                    Some(self.start_holds(ids, text.text()))
                }
                Edit::Cancel => {
                    self.mode = Mode::Normal;
                    let what = super::operate::describe_many(&self.hold_actions(&ids, ""));
                    self.say(format!("cancelled: {what}"), Tone::Plain);
                    None
                }
                Edit::Changed => {
                    self.mode = Mode::HoldComment(ids, text);
                    None
                }
                Edit::Ignored => None,
            },
        }
    }

    fn on_filter_key(&mut self, key: KeyEvent) -> Option<Command> {
        let edit = self.tab_mut().state.filter.handle(&key);
        match edit {
            Edit::Submit => self.mode = Mode::Normal,
            Edit::Cancel => {
                self.tab_mut().state.filter.clear();
                self.mode = Mode::Normal;
            }
            Edit::Changed => {}
            Edit::Ignored if keys::leaves_filter(&key) => {
                self.mode = Mode::Normal;
                return self.on_table_key(key);
            }
            Edit::Ignored => return None,
        }
        self.refresh();
        None
    }

    fn on_detail_key(&mut self, k: RecordKey, scroll: usize, key: KeyEvent) -> Option<Command> {
        if keys::closes(&key, false) {
            self.mode = Mode::Normal;
            return None;
        }
        match keys::detail_intent(&key) {
            Some(DetailIntent::ConsoleLog) => {
                return match &k {
                    RecordKey::Node(id) => self.open_console(id.clone()),
                    _ => {
                        self.say(
                            "the console log is a node's (open the detail of a node)".into(),
                            Tone::Attention,
                        );
                        None
                    }
                };
            }
            None => {}
        }
        if let Some(s) = self.scroll(scroll, key) {
            self.mode = Mode::Detail(k, s);
        }
        None
    }

    /// New scroll position of a pane for a movement key; `None` if not a movement key.
    fn scroll(&self, at: usize, key: KeyEvent) -> Option<usize> {
        let max = self.pane_lines.saturating_sub(self.pane_height);
        let page = self.pane_height.max(1);
        let to = match keys::intent(&key)? {
            Intent::Down => at.saturating_add(1),
            Intent::Up => at.saturating_sub(1),
            Intent::PageDown => at.saturating_add(page),
            Intent::PageUp => at.saturating_sub(page),
            Intent::Home => 0,
            Intent::End => max,
            _ => return None,
        };
        Some(to.min(max))
    }

    fn on_table_key(&mut self, key: KeyEvent) -> Option<Command> {
        let intent = keys::intent(&key)?;
        let page = self.page.max(1) as isize;
        let n = ViewKind::ALL.len();
        let i = self.view.index();
        match intent {
            Intent::Quit => return Some(Command::Quit),
            Intent::ClearFilter => self.clear_marks_or_filter(),
            Intent::Tab(t) => self.switch(t),
            Intent::NextTab => self.switch((i + 1) % n),
            Intent::PrevTab => self.switch((i + n - 1) % n),
            Intent::Help => self.mode = Mode::Help(0),
            _ if !self.view.is_table() => {}
            Intent::Down => self.move_by(1),
            Intent::Up => self.move_by(-1),
            Intent::PageDown => self.move_by(page),
            Intent::PageUp => self.move_by(-page),
            Intent::Home | Intent::End => {
                let tab = self.tab_mut();
                tab.rows.select_edge(&mut tab.state, intent == Intent::End);
            }
            Intent::SortNext | Intent::SortPrev | Intent::SortFlip => self.sort(intent),
            Intent::Filter => self.mode = Mode::Filter,
            Intent::Detail if self.view == ViewKind::Problems => self.jump_to_problem(),
            Intent::Detail => {
                if let Some(k) = self.selected().cloned() {
                    self.mode = Mode::Detail(k, 0);
                }
            }
            Intent::Mark => self.mark(),
            Intent::Delete
            | Intent::Hold
            | Intent::Unhold
            | Intent::TogglePause
            | Intent::RequestBuild => self.on_action_key(intent),
        }
        let page = self.page;
        let tab = self.tab_mut();
        let visible = tab.rows.visible.len();
        scroll_into_view(&mut tab.state, visible, page);
        None
    }

    fn move_by(&mut self, delta: isize) {
        let tab = self.tab_mut();
        tab.rows.move_selection(&mut tab.state, delta);
    }

    fn sort(&mut self, intent: Intent) {
        let n = self.view.columns().len().max(1);
        let st = &mut self.tab_mut().state;
        match intent {
            Intent::SortNext => st.sort = (st.sort + 1) % n,
            Intent::SortPrev => st.sort = (st.sort + n - 1) % n,
            _ => st.descending = !st.descending,
        }
        self.refresh();
    }

    /// `Esc` in a table: unmark the marked rows, else clear the filter. Never quits
    /// (Esc is pressed to close dialogs, often once too often).
    fn clear_marks_or_filter(&mut self) {
        let st = &mut self.tab_mut().state;
        if !st.marked.is_empty() {
            st.marked.clear();
        } else if !st.filter.is_empty() {
            st.filter.clear();
            self.refresh();
        }
    }

    pub(crate) fn switch(&mut self, tab: usize) {
        if let Some(v) = ViewKind::ALL.get(tab) {
            self.view = *v;
            self.ensure_rows();
        }
    }
}
