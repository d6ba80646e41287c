//! What every ZooKeeper subcommand needs before it starts: the loaded config and a
//! connected store, with failures turned into one clear line (which hosts could not be
//! reached, every config problem as `file:line:column`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use color_eyre::eyre::{eyre, Result};
use nodepool_shared::config::Config;
use nodepool_shared::zk::{ZkClient, ZkStore};

/// Global options a subcommand uses.
#[derive(Clone, Debug)]
pub struct Globals {
    /// `-c`.
    pub config: PathBuf,
    /// `-s`.
    pub secure: Option<PathBuf>,
    /// `--zk-timeout`.
    pub zk_timeout: Duration,
}

impl Globals {
    /// Loads and validates the config (and the secure file). The error text lists every
    /// problem, one `file:line:column: message` per line.
    pub fn load_config(&self) -> Result<Config> {
        load_config(&self.config, self.secure.as_deref())
    }

    /// Loads the config and connects to its ZooKeeper.
    pub async fn connect(&self) -> Result<Session> {
        let config = self.load_config()?;
        let store = connect(&config, self.zk_timeout).await?;
        Ok(Session { config, store })
    }
}

/// Loads `path` (+ `secure`), with the problems as the error message.
pub fn load_config(path: &Path, secure: Option<&Path>) -> Result<Config> {
    Config::load(path, secure).map_err(|e| eyre!("{e}"))
}

/// Connects to the config's ZooKeeper, giving up after `timeout`; the same bound applies
/// to every later call.
pub async fn connect(config: &Config, timeout: Duration) -> Result<ZkStore> {
    let mut settings = config.zk_settings();
    settings.connect_timeout = Some(timeout);
    settings.request_timeout = timeout;
    let hosts = settings.connect_string();
    if settings.hosts.is_empty() {
        return Err(eyre!("no ZooKeeper servers configured (zookeeper-servers)"));
    }
    match tokio::time::timeout(timeout, ZkClient::connect(settings)).await {
        Ok(Ok(client)) => Ok(ZkStore::new(client)),
        Ok(Err(e)) => Err(eyre!(
            "ZooKeeper unreachable: no connection to {hosts} within {}: {e}",
            secs(timeout)
        )),
        Err(_) => Err(eyre!(
            "ZooKeeper unreachable: no connection to {hosts} within {}",
            secs(timeout)
        )),
    }
}

/// `10s`, `2.5s`.
pub fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// A loaded config and a connected store.
pub struct Session {
    /// The config.
    pub config: Config,
    /// The store.
    pub store: ZkStore,
}

impl Session {
    /// Closes the ZooKeeper session (so our lock contenders vanish at once).
    pub async fn close(self) {
        self.store.client().close().await;
    }
}

/// Writes `text` and a newline to stdout in one go (control characters as `?` on a
/// terminal, see [`super::terminal`]); a closed pipe (`| head`) is not an error.
pub fn print_out(text: &str) -> Result<()> {
    let text = super::terminal::for_stdout(text);
    let mut out = std::io::stdout().lock();
    let r = out
        .write_all(text.as_bytes())
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(eyre!("cannot write to stdout: {e}")),
    }
}

/// Asks `question` followed by ` [N/y] ` on the terminal; true only for `y`/`Y`. Without
/// a terminal on stdin it fails with `refusal` (never reads EOF as an answer).
pub fn ask_yes(question: &str, refusal: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(eyre!("{refusal}"));
    }
    let mut out = std::io::stdout().lock();
    write!(out, "{question} [N/y] ")?;
    out.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(answer.trim().eq_ignore_ascii_case("y"))
}
