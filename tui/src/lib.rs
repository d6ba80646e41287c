//! `nodepool-tui`: a live operator console over ZooKeeper.
//!
//! The console reads only the in-memory [`TreeCache`](nodepool_shared::zk::TreeCache)
//! (one recursive watch on `/nodepool`), so drawing never waits on ZooKeeper; actions
//! (delete/hold nodes, pause an image, …), console logs, lock owners and cloud quotas
//! are fetched by background tasks that report back.
//!
//! * [`app`]: the state and the pure event handling (`App::update`).
//! * [`ui`]: drawing the state (pure: state in, frame out).
//! * [`views`], [`table`], [`rows`]: what each tab shows (rows, columns, sorting,
//!   filtering, the Overview's model, the detail pane).
//! * [`incremental`], [`tally`]: the nodes tab and the node counts kept in step with
//!   the cache record by record.
//! * [`history`]: what the console remembers since it started (trends, failures).
//! * [`data`]: the snapshot of the cache and the config facts the views are built from.
//! * [`actions`]: the operator actions and their ZooKeeper side.
//! * [`keys`]: the key map (also the source of the help overlay); [`input`]: typed text.
//! * [`theme`]: colours by state.
//! * [`args`], [`runtime`], [`background`]: command line, the terminal event loop and
//!   the background work.

// Module docs link to the private items that do the work; `cargo doc` documents them
// (`--document-private-items`, set in .cargo/config.toml), so the links resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub mod actions;
pub mod app;
pub mod args;
pub mod background;
pub mod data;
pub mod history;
pub mod incremental;
pub mod input;
pub mod keys;
pub mod rows;
pub mod runtime;
pub mod table;
pub mod tally;
pub mod theme;
pub mod ui;
pub mod views;
