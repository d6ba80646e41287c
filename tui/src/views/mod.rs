//! The tabs: which columns each table has and how its rows are built from the data
//! ([`ViewData`]), the Overview's model, and the detail pane's content. Pure functions
//! of the data.
//!
//! * [`nodes`]: views 1 (nodes) and 2 (requests).
//! * [`images`]: views 3 (builds), 4 (uploads) and 7 (images).
//! * [`labels`]: views 5 (labels) and 6 (components).
//! * [`problems`]: view 8, the diagnostics' problems.
//! * [`overview`]: view 0, the dashboard's model.
//! * [`mod@detail`]: the detail pane of a record.

pub mod detail;
pub mod images;
pub mod labels;
pub mod nodes;
pub mod overview;
pub mod problems;

use nodepool_shared::diagnostics::Problem;

use crate::data::{ConfigInfo, Snapshot};
use crate::table::{ColumnDef, Row};

pub use detail::detail;
pub use images::build_request_state;
pub use labels::{label_counts, LabelCounts, COMPONENT_KINDS};

/// What the tables are built from.
#[derive(Clone, Copy, Debug)]
pub struct ViewData<'a> {
    /// The cached records.
    pub snapshot: &'a Snapshot,
    /// Facts from the config.
    pub config: &'a ConfigInfo,
    /// The problems found in them.
    pub problems: &'a [Problem],
}

/// A tab of the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ViewKind {
    /// The dashboard: capacity, labels, trends, images.
    Overview,
    /// Nodes (`nodepool list`).
    Nodes,
    /// Node requests.
    Requests,
    /// Diskimage builds.
    Builds,
    /// Image uploads.
    Uploads,
    /// Per-label counts.
    Labels,
    /// Launchers, pool workers and builders.
    Components,
    /// Per-image status (paused, build requests).
    Images,
    /// What the diagnostics found wrong.
    Problems,
}

impl ViewKind {
    /// All tabs in key order (key `0` is the first).
    pub const ALL: [ViewKind; 9] = [
        ViewKind::Overview,
        ViewKind::Nodes,
        ViewKind::Requests,
        ViewKind::Builds,
        ViewKind::Uploads,
        ViewKind::Labels,
        ViewKind::Components,
        ViewKind::Images,
        ViewKind::Problems,
    ];

    /// Position in [`ViewKind::ALL`] (also the key that selects it).
    pub fn index(self) -> usize {
        ViewKind::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }

    /// The tab title.
    pub fn title(self) -> &'static str {
        match self {
            ViewKind::Overview => "Overview",
            ViewKind::Nodes => "Nodes",
            ViewKind::Requests => "Requests",
            ViewKind::Builds => "Builds",
            ViewKind::Uploads => "Uploads",
            ViewKind::Labels => "Labels",
            ViewKind::Components => "Components",
            ViewKind::Images => "Images",
            ViewKind::Problems => "Problems",
        }
    }

    /// The title in a narrow tab bar (at most 4 characters).
    pub fn short_title(self) -> &'static str {
        match self {
            ViewKind::Overview => "Over",
            ViewKind::Nodes => "Node",
            ViewKind::Requests => "Req",
            ViewKind::Builds => "Bld",
            ViewKind::Uploads => "Upl",
            ViewKind::Labels => "Lbl",
            ViewKind::Components => "Comp",
            ViewKind::Images => "Img",
            ViewKind::Problems => "Prob",
        }
    }

    /// Whether the tab is a table (all but the Overview).
    pub fn is_table(self) -> bool {
        self != ViewKind::Overview
    }

    /// Whether rows can be marked for an action on several at once.
    pub fn markable(self) -> bool {
        matches!(self, ViewKind::Nodes | ViewKind::Builds | ViewKind::Uploads)
    }

    /// Columns of the tab (none for the Overview).
    pub fn columns(self) -> &'static [ColumnDef] {
        match self {
            ViewKind::Overview => &[],
            ViewKind::Nodes => &nodes::NODE_COLUMNS,
            ViewKind::Requests => &nodes::REQUEST_COLUMNS,
            ViewKind::Builds => &images::BUILD_COLUMNS,
            ViewKind::Uploads => &images::UPLOAD_COLUMNS,
            ViewKind::Labels => &labels::LABEL_COLUMNS,
            ViewKind::Components => &labels::COMPONENT_COLUMNS,
            ViewKind::Images => &images::IMAGE_COLUMNS,
            ViewKind::Problems => &problems::PROBLEM_COLUMNS,
        }
    }

    /// Builds the rows of the tab (unsorted, unfiltered).
    pub fn rows(self, d: &ViewData<'_>) -> Vec<Row> {
        match self {
            ViewKind::Overview => Vec::new(),
            ViewKind::Nodes => nodes::node_rows(d.snapshot),
            ViewKind::Requests => nodes::request_rows(d.snapshot),
            ViewKind::Builds => images::build_rows(d.snapshot),
            ViewKind::Uploads => images::upload_rows(d.snapshot),
            ViewKind::Labels => labels::label_rows(d.snapshot, d.config),
            ViewKind::Components => labels::component_rows(d.snapshot),
            ViewKind::Images => images::image_rows(d.snapshot, d.config),
            ViewKind::Problems => problems::problem_rows(d.problems),
        }
    }
}
