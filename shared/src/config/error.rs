//! The error a config load returns: either the file could not be read, or a list of
//! problems, each pointing at `origin:line:column` and naming the key.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file name (or the `origin` given to [`super::Config::from_yaml_str`]).
    pub origin: String,
    /// 1-based line; 0 when the problem has no single place (e.g. a missing secure file entry).
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub column: u64,
    /// What is wrong, starting with the key path (e.g. `providers[0].rate: expected a number`).
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.origin, self.line, self.column, self.message
        )
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is invalid; every problem found is listed, one per line.
    #[error("{}", display_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems found (empty for [`ConfigError::Io`]).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid(p) => p,
        }
    }
}

fn display_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_each_problem_as_origin_line_column() {
        let p = |line, message: &str| Problem {
            origin: "nodepool.yaml".into(),
            line,
            column: 3,
            message: message.into(),
        };
        let err = ConfigError::Invalid(vec![p(4, "labels[0]: unknown key `foo`"), p(9, "x")]);
        assert_eq!(
            err.to_string(),
            "nodepool.yaml:4:3: labels[0]: unknown key `foo`\nnodepool.yaml:9:3: x"
        );
        assert_eq!(err.problems().len(), 2);
    }
}
