//! The one error type of the data model, so that callers can log and skip a corrupt record.

/// Why a ZooKeeper record or id could not be read.
///
/// `record` names what was being read, e.g. `node 0000004772` or `request 100-0000003350`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The znode data is not valid JSON.
    #[error("{record}: invalid JSON: {source}")]
    Json {
        record: String,
        #[source]
        source: serde_json::Error,
    },
    /// The znode data is JSON but not an object.
    #[error("{record}: expected a JSON object, found {found}")]
    NotAnObject { record: String, found: String },
    /// A required key is missing.
    #[error("{record}: missing key `{key}`")]
    Missing { record: String, key: &'static str },
    /// A key has a value of the wrong type or an unknown enum value.
    #[error("{record}: key `{key}`: expected {expected}, found {found}")]
    Field {
        record: String,
        key: String,
        expected: &'static str,
        found: String,
    },
    /// A string is not a valid id of the given kind.
    #[error("invalid {kind} `{value}`: {reason}")]
    InvalidId {
        kind: &'static str,
        value: String,
        reason: &'static str,
    },
}
