//! One anomaly found by an inspection ([`Problem`]): how bad it is ([`Severity`]), what
//! kind it is ([`ProblemKind`], a stable name for scripts), a one-line summary, the
//! records involved and a suggested action; and how `nodepool doctor` prints a list of
//! them (text or JSON) and turns it into an exit status.

use serde_json::{json, Value};

use super::snapshot::RecordKey;

/// How bad a problem is. Ordered: `Info < Warning < Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing, nothing is wrong (e.g. an image paused by an operator).
    Info,
    /// Something is slow or stuck and may need a hand.
    Warning,
    /// Something is broken and will not heal by itself.
    Error,
}

impl Severity {
    /// `info`, `warning`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $title:literal;)*) => {
        /// What kind of anomaly (the `kind` of `doctor --format json`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ProblemKind {
            $($(#[$doc])* $variant,)*
        }

        impl ProblemKind {
            /// Every kind, in report order.
            pub const ALL: &'static [ProblemKind] = &[$(ProblemKind::$variant,)*];

            /// The stable name, e.g. `node-deleting-too-long`.
            pub fn as_str(self) -> &'static str {
                match self { $(ProblemKind::$variant => $name,)* }
            }

            /// A short title for tables.
            pub fn title(self) -> &'static str {
                match self { $(ProblemKind::$variant => $title,)* }
            }
        }
    };
}

kinds! {
    /// A record znode holds data no reader understands.
    CorruptRecord = "corrupt-record", "corrupt record";
    /// A lock contender znode that no ZooKeeper session owns (it never goes away).
    LockWithoutSession = "lock-without-session", "lock without session";
    /// A provider pool of the config has no registered pool worker.
    ProviderWithoutPoolWorker = "provider-without-pool-worker", "no pool worker";
    /// A node is `building` longer than a launch may take.
    NodeBuildingTooLong = "node-building-too-long", "building too long";
    /// A node is `deleting` for more than 10 minutes.
    NodeDeletingTooLong = "node-deleting-too-long", "deleting too long";
    /// A `ready` node is allocated to a request that no longer exists.
    ReadyNodeOfVanishedRequest = "ready-node-of-vanished-request", "allocated to gone request";
    /// A request waits for more than 10 minutes.
    RequestWaitingTooLong = "request-waiting-too-long", "request waiting";
    /// Every pool that could serve a request but one declined it.
    RequestOnePoolLeft = "request-one-pool-left", "one pool left";
    /// A label is below its `min-ready` for more than 10 minutes.
    LabelBelowMinReady = "label-below-min-ready", "below min-ready";
    /// The newest builds of an image failed.
    ImageBuildsFailing = "image-builds-failing", "builds failing";
    /// The newest ready build of an image is older than a rebuild can explain.
    ImageStale = "image-stale", "image stale";
    /// An upload is `uploading` longer than `image-upload-timeout`.
    UploadStuck = "upload-stuck", "upload stuck";
    /// A pool worker is paused (waiting for quota).
    PoolPaused = "pool-paused", "pool paused";
    /// Launchers or builders run different versions.
    VersionMismatch = "version-mismatch", "versions differ";
    /// An image is paused (no builds).
    ImagePaused = "image-paused", "image paused";
}

/// One anomaly.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// How bad.
    pub severity: Severity,
    /// What kind.
    pub kind: ProblemKind,
    /// One line: what is wrong, with the numbers.
    pub summary: String,
    /// The records involved (the first one is what a console jumps to).
    pub records: Vec<RecordKey>,
    /// What an operator can do about it.
    pub action: String,
    /// Since when (float epoch seconds), when known.
    pub since: Option<f64>,
}

impl Problem {
    /// A problem without a start time.
    pub fn new(
        severity: Severity,
        kind: ProblemKind,
        summary: impl Into<String>,
        records: Vec<RecordKey>,
        action: impl Into<String>,
    ) -> Problem {
        Problem {
            severity,
            kind,
            summary: summary.into(),
            records,
            action: action.into(),
            since: None,
        }
    }

    /// The same problem with a start time.
    pub fn since(mut self, t: f64) -> Problem {
        self.since = (t.is_finite() && t > 0.0).then_some(t);
        self
    }

    /// The problem as one JSON object (`doctor --format json`).
    pub fn to_json(&self) -> Value {
        let records: Vec<Value> = self
            .records
            .iter()
            .map(|r| json!({"type": r.kind(), "id": r.id(), "path": r.path()}))
            .collect();
        json!({
            "severity": self.severity.as_str(),
            "kind": self.kind.as_str(),
            "summary": self.summary,
            "records": records,
            "action": self.action,
            "since": self.since,
        })
    }
}

/// Sorts problems for a report: errors first, then by kind, then oldest first.
pub fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.kind.cmp(&b.kind))
            .then(
                a.since
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.since.unwrap_or(f64::MAX)),
            )
            .then_with(|| a.records.cmp(&b.records))
    });
}

/// The exit status of `nodepool doctor`: 0 nothing (or only info), 1 warnings, 2 errors.
pub fn exit_status(problems: &[Problem]) -> u8 {
    match problems.iter().map(|p| p.severity).max() {
        Some(Severity::Error) => 2,
        Some(Severity::Warning) => 1,
        _ => 0,
    }
}

/// The text report: one block per problem, then a count line.
pub fn render_text(problems: &[Problem]) -> String {
    let mut out = String::new();
    for p in problems {
        out.push_str(&format!(
            "{:<7} {}: {}\n",
            p.severity.as_str().to_uppercase(),
            p.kind.as_str(),
            p.summary
        ));
        for r in &p.records {
            match r.path() {
                Some(path) => out.push_str(&format!("        {}: {path}\n", r.describe())),
                None => out.push_str(&format!("        {}\n", r.describe())),
            }
        }
        out.push_str(&format!("        action: {}\n", p.action));
    }
    out.push_str(&summary_line(problems));
    out
}

/// `No problems found.` or `3 problems: 1 error, 2 warnings`.
pub fn summary_line(problems: &[Problem]) -> String {
    if problems.is_empty() {
        return "No problems found.".to_string();
    }
    let count = |s: Severity| problems.iter().filter(|p| p.severity == s).count();
    let mut parts = Vec::new();
    for (s, one, many) in [
        (Severity::Error, "error", "errors"),
        (Severity::Warning, "warning", "warnings"),
        (Severity::Info, "info", "info"),
    ] {
        match count(s) {
            0 => {}
            1 => parts.push(format!("1 {one}")),
            n => parts.push(format!("{n} {many}")),
        }
    }
    let n = problems.len();
    format!(
        "{n} problem{}: {}",
        if n == 1 { "" } else { "s" },
        parts.join(", ")
    )
}

/// The JSON report: `{"problems": [...], "errors": n, "warnings": n, "info": n}`.
pub fn render_json(problems: &[Problem]) -> String {
    let count = |s: Severity| problems.iter().filter(|p| p.severity == s).count();
    json!({
        "problems": problems.iter().map(Problem::to_json).collect::<Vec<_>>(),
        "errors": count(Severity::Error),
        "warnings": count(Severity::Warning),
        "info": count(Severity::Info),
    })
    .to_string()
}
