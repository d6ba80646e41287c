//! `nodepool-tui`: a live operator console over ZooKeeper.
//!
//! The console reads only the in-memory [`TreeCache`](nodepool_shared::zk::TreeCache)
//! (one recursive watch on `/nodepool`), so drawing never waits on ZooKeeper; actions
//! (delete/hold a node, pause an image, …) run in spawned tasks that report back.
//!
//! * [`app`]: the state and the pure event handling (`App::update`).
//! * [`ui`]: drawing the state (pure: state in, frame out).
//! * [`views`], [`table`]: what each tab shows (rows, columns, sorting, filtering).
//! * [`data`]: the snapshot of the cache the views are built from.
//! * [`actions`]: the operator actions and their ZooKeeper side.
//! * [`keys`]: the key map (also the source of the help overlay).
//! * [`theme`]: colours by state.
//! * [`args`], [`runtime`]: command line and the terminal event loop.

pub mod actions;
pub mod app;
pub mod args;
pub mod data;
pub mod keys;
pub mod runtime;
pub mod table;
pub mod theme;
pub mod ui;
pub mod views;
