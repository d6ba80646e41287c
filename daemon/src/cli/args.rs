//! The command line of `nodepool`: global options and every subcommand, as Nodepool 11
//! spells them, plus our additions (`--format json`, `--zk-timeout`, `--yes`,
//! `completions`). clap turns usage errors into exit status 2.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nodepool_shared::listing::OutputFormat;

/// Default config file, as in Python Nodepool.
pub const DEFAULT_CONFIG: &str = "/etc/nodepool/nodepool.yaml";

/// The `nodepool` operator command.
#[derive(Debug, Parser)]
#[command(
    name = "nodepool",
    about = "Nodepool operator command: inspect and manage nodes, images and requests in ZooKeeper.",
    disable_version_flag = true
)]
pub struct Cli {
    /// Path to the config file (nodepool.yaml).
    #[arg(
        short = 'c',
        value_name = "CONFIG",
        env = "NODEPOOL_CONFIG",
        default_value = DEFAULT_CONFIG,
        global = true
    )]
    pub config: PathBuf,

    /// Path to the secure config file (overrides ZooKeeper settings).
    #[arg(short = 's', value_name = "SECURE", global = true)]
    pub secure: Option<PathBuf>,

    /// Show debug logging (and full error reports) on stderr.
    #[arg(long, global = true)]
    pub debug: bool,

    /// Python logging config file; accepted for compatibility and ignored (see docs/cli.md).
    #[arg(short = 'l', value_name = "LOGCONFIG", global = true)]
    pub logconfig: Option<PathBuf>,

    /// How long to try to reach ZooKeeper, and the bound of every ZooKeeper call, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        value_parser = parse_seconds,
        global = true
    )]
    pub zk_timeout: f64,

    /// Show the version and exit.
    #[arg(long)]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Why `s` cannot be one component of a ZooKeeper path: empty, `.` or `..`, a `/`, or a
/// character ZooKeeper refuses in a path (control characters, the private-use range
/// U+E000–U+F8FF, U+FFF0 and above). Checked before any ZooKeeper call, so a bad
/// argument never reaches (or walks around) the tree.
pub fn znode_name_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s == "." || s == ".." {
        return Some(format!(
            "`{s}` is not allowed (it would name another znode)"
        ));
    }
    if s.contains('/') {
        return Some("must not contain `/`".into());
    }
    // ZooKeeper checks UTF-16 code units: characters above U+FFFF are surrogate pairs,
    // which it refuses like the private-use range.
    let refused =
        |c: char| c.is_control() || ('\u{e000}'..='\u{f8ff}').contains(&c) || c >= '\u{fff0}';
    if let Some(c) = s.chars().find(|c| refused(*c)) {
        return Some(format!(
            "contains the character {c:?}, which ZooKeeper does not allow in a path"
        ));
    }
    None
}

fn znode_name(what: &str, s: &str) -> Result<String, String> {
    match znode_name_problem(s) {
        None => Ok(s.to_string()),
        Some(why) => Err(format!("not a valid {what}: {why}")),
    }
}

/// A node id (one znode name below `/nodepool/nodes`).
pub fn node_id(s: &str) -> Result<String, String> {
    znode_name("node id", s)
}

/// An image (diskimage) name.
pub fn image_name(s: &str) -> Result<String, String> {
    znode_name("image name", s)
}

/// A provider name.
pub fn provider_name(s: &str) -> Result<String, String> {
    znode_name("provider name", s)
}

/// A build id.
pub fn build_id(s: &str) -> Result<String, String> {
    znode_name("build id", s)
}

/// An upload id (a sequence number as `image-list` shows it, e.g. `0000000001`).
pub fn upload_id(s: &str) -> Result<String, String> {
    znode_name("upload id", s)
}

/// `<image>-<build-id>` as `dib-image-list` shows it: both parts valid names.
pub fn image_build(s: &str) -> Result<String, String> {
    let Some((image, build)) = s.rsplit_once('-') else {
        return Err("expected <image>-<build-id>, as dib-image-list shows".into());
    };
    image_name(image)?;
    build_id(build)?;
    Ok(s.to_string())
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1.0e6 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

/// Output format of a listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A PrettyTable-style text table (as Python Nodepool prints it).
    #[default]
    Text,
    /// A JSON list of objects, byte-identical to the web API's JSON.
    Json,
}

impl From<Format> for OutputFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Text => OutputFormat::Text,
            Format::Json => OutputFormat::Json,
        }
    }
}

/// Output format of `doctor`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One block per problem (severity, kind, summary, records, action), then a count.
    #[default]
    Text,
    /// One JSON object: the problems, and how many errors, warnings and info.
    Json,
}

impl From<ReportFormat> for OutputFormat {
    fn from(f: ReportFormat) -> Self {
        match f {
            ReportFormat::Text => OutputFormat::Text,
            ReportFormat::Json => OutputFormat::Json,
        }
    }
}

/// `--format` of the listing commands.
#[derive(Clone, Copy, Debug, Args)]
pub struct FormatArg {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List nodes (ID, Provider, Label, Server ID, Public IPv4, IPv6, State, Age, Locked).
    List {
        /// Show all 21 columns (Pool, Hostname, Private IPv4, AZ, Username, Port, Launcher,
        /// Allocated To, Hold Job, Comment, User Data, Driver Data in addition).
        #[arg(long)]
        detail: bool,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Mark nodes for deletion (the launcher deletes them), or delete them now.
    ///
    /// Locks each node (waiting up to 5 s), sets its state to `deleting` and unlocks it;
    /// prints the nodes' rows. With --now the cloud server is deleted right here through
    /// the node's provider from the local config, then the node record. More than one id
    /// asks for confirmation on a terminal unless --yes (without a terminal: refused).
    Delete {
        /// Node ids (e.g. 0000000042); Python Nodepool takes exactly one.
        #[arg(value_name = "ID", required = true, num_args = 1.., value_parser = node_id)]
        ids: Vec<String>,
        /// Delete the server and the node record in the foreground.
        #[arg(long)]
        now: bool,
        /// Do not ask before deleting several nodes.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Put a node on hold: it is kept until deleted by hand (or max-hold-age).
    ///
    /// Locks the node (waiting up to 5 s), sets its state to `hold`, unlocks it and prints
    /// its row.
    Hold {
        /// Node id (e.g. 0000000042).
        #[arg(value_parser = node_id)]
        id: String,
        /// Why the node is held (stored as the node's comment).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// List image builds (ID, Image, Builder, Formats, State, Age).
    DibImageList {
        #[command(flatten)]
        format: FormatArg,
    },
    /// List image uploads to providers.
    ImageList {
        #[command(flatten)]
        format: FormatArg,
    },
    /// Show, per image, whether it is paused and any outstanding manual build request.
    ImageStatus {
        #[command(flatten)]
        format: FormatArg,
    },
    /// Request a build of a diskimage (it must be in the config and not paused there).
    ImageBuild {
        /// Diskimage name.
        #[arg(value_parser = image_name)]
        image: String,
    },
    /// Mark an image build for deletion (`<image>-<build-id>`, as dib-image-list shows).
    ///
    /// A build that is still building is refused. The builder's cleanup then removes its
    /// uploads, local files and record.
    DibImageDelete {
        /// Build id as shown by dib-image-list: `<image>-<build-id>`.
        #[arg(value_parser = image_build)]
        id: String,
    },
    /// Mark one image upload for deletion (the builder's cleanup removes it).
    ///
    /// An upload in progress is refused. Note that an upload worker uploads the newest
    /// build again unless the image is paused.
    ImageDelete {
        /// Provider name.
        #[arg(long, value_parser = provider_name)]
        provider: String,
        /// Image name.
        #[arg(long, value_parser = image_name)]
        image: String,
        /// Build id.
        #[arg(long, value_parser = build_id)]
        build_id: String,
        /// Upload id.
        #[arg(long, value_parser = upload_id)]
        upload_id: String,
    },
    /// Pause an image: no builds (scheduled or requested) until unpaused. Uploads of
    /// existing builds go on (as in Nodepool); `pause: true` on a provider's diskimage
    /// entry stops uploads.
    ImagePause {
        /// Image name.
        #[arg(value_parser = image_name)]
        image: String,
    },
    /// Unpause an image.
    ImageUnpause {
        /// Image name.
        #[arg(value_parser = image_name)]
        image: String,
    },
    /// Show the ZooKeeper data of a provider: its image uploads and its nodes.
    Info {
        /// Provider name.
        #[arg(value_parser = provider_name)]
        provider: String,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Erase the ZooKeeper data of a provider (its upload records and node records).
    ///
    /// Nothing is deleted in the cloud. Asks for confirmation unless --force or --yes;
    /// without a terminal to ask on it refuses.
    Erase {
        /// Provider name.
        #[arg(value_parser = provider_name)]
        provider: String,
        /// Do not ask for confirmation (as Nodepool).
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation (same as --force).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List images in the clouds that carry Nodepool's build id but match no ready upload.
    AlienImageList {
        /// Only this provider.
        #[arg(value_parser = provider_name)]
        provider: Option<String>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// List node requests.
    RequestList {
        #[command(flatten)]
        format: FormatArg,
    },
    /// Validate the config file; prints every problem as file:line:column (no ZooKeeper).
    ConfigValidate,
    /// Look for problems: stuck nodes and uploads, waiting requests, short labels,
    /// failing images, missing pool workers, orphaned locks, paused images and pools.
    ///
    /// Loads the whole tree as the daemons do, compares it with the config and prints
    /// each problem with its severity, the records involved and a suggested action.
    /// Exit status: 0 no problem (or only info), 1 warnings, 2 errors or the inspection
    /// failed (config, ZooKeeper): usable from cron or as a monitoring check.
    Doctor {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Print the console log of a node's server, fetched from its cloud.
    ///
    /// Uses the node's provider from the config and its cloud in clouds.yaml (Nova's
    /// os-getConsoleOutput).
    ConsoleLog {
        /// Node id (e.g. 0000000042).
        #[arg(value_parser = node_id)]
        id: String,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        lines: Option<u32>,
    },
    /// Write all image build/upload records and pause flags to a JSON file (mode 0600).
    ExportImageData {
        /// Output file (created or truncated).
        path: PathBuf,
    },
    /// Re-create image records from an export-image-data file.
    ///
    /// First raises each upload directory's sequence counter past the highest imported
    /// upload id, so new uploads never reuse an imported id. Refuses if any imported
    /// record already exists.
    ImportImageData {
        /// Input file written by export-image-data.
        path: PathBuf,
    },
    /// Print a shell completion script (e.g. `nodepool completions bash > /etc/bash_completion.d/nodepool`).
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_globals_after_subcommand() {
        let cli = Cli::try_parse_from(["nodepool", "list", "--detail", "-c", "/x.yaml"]).unwrap();
        assert_eq!(cli.config, PathBuf::from("/x.yaml"));
        assert!(matches!(
            cli.command,
            Some(Command::List { detail: true, .. })
        ));
    }

    #[test]
    fn image_delete_needs_all_ids() {
        let e = Cli::try_parse_from(["nodepool", "image-delete", "--provider", "p"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn rejects_bad_timeout() {
        assert!(Cli::try_parse_from(["nodepool", "--zk-timeout", "0", "list"]).is_err());
        assert!(Cli::try_parse_from(["nodepool", "--zk-timeout", "x", "list"]).is_err());
    }
}
