//! The listings shared by the `nodepool` CLI, the launcher's read-only web API and the TUI
//! (docs/cli.md): which columns each listing has, how values are formatted, and how a
//! table is rendered (PrettyTable-compatible text, or JSON as the web API emits it).
//!
//! Everything here is pure: builders take model records plus the extra facts they need
//! (lock flags, paused images, build requests, "now") and return a [`Table`]; nothing
//! touches ZooKeeper, so every listing is unit-testable.
//!
//! * [`table`]: [`Table`], [`Column`], [`Cell`], field selection and the two renderers.
//! * [`writer`]: [`TableWriter`] and [`TextLayout`], for listings written row by row
//!   (100,000 nodes) without a table of every row's cells.
//! * [`width`]: the display width PrettyTable uses to pad cells.
//! * [`age`]: `DD:HH:MM:SS` ages and the TUI's relative "3m ago".
//! * [`accept`]: `Accept` header negotiation of the web API.
//! * [`node_json`]: the node listing's fields read straight from a record's JSON.
//! * [`nodes`], [`requests`], [`images`], [`misc`]: the builders of every listing.

pub mod accept;
pub mod age;
pub mod images;
pub mod misc;
pub mod node_json;
pub mod nodes;
pub mod requests;
pub mod table;
pub mod width;
pub mod writer;

pub use accept::{
    acceptable_offers, negotiate, NegotiationError, ResponseFormat, CONTENT_TYPE_JSON,
    CONTENT_TYPE_TEXT,
};
pub use age::{format_age, format_relative};
pub use images::{
    alien_image_list, dib_image_list, export_image_data, image_list, image_status, AlienImage,
    BuildRequest, BuildRequestState, ImageStatusEntry,
};
pub use misc::{info_builds, info_nodes, info_text, label_list};
pub use node_json::ListedNode;
pub use nodes::{
    listed_node_row, node_list, node_list_owned, owned_node_row, redacted_port,
    render_compact_nodes, write_compact_nodes, NodeColumns, NodeListing, NODE_BRIEF_KEYS,
};
pub use requests::request_list;
pub use table::{Cell, Column, Fields, OutputFormat, Table};
pub use writer::{TableWriter, TextLayout};
