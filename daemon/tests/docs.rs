//! Keeps the operator documentation true.
//!
//! * Every ```yaml block in `docs/*.md` whose first line is `# nodepool.yaml` is a full
//!   configuration: it is written to a file and must pass the real `nodepool
//!   config-validate`.
//! * Every `$ nodepool …` line of a ```console / ```shell block in `docs/operation.md` and
//!   `docs/cli.md` runs, block by block, against a fresh chroot of the test ZooKeeper
//!   (over TLS when the harness has it) seeded with the nodes, build, upload and request
//!   the examples name, and must exit 0. A line that needs something the test cannot
//!   give (a cloud, a second ZooKeeper) ends with `# untested: <reason>` and is skipped.

use std::path::{Path, PathBuf};
use std::process::Output;

use nodepool_shared::model::{
    paths, BuildId, BuildState, ImageBuild, ImageUpload, Node, NodeRequest, NodeState, UploadState,
};
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::{ZkSettings, ZkStore};

const BIN: &str = env!("CARGO_BIN_EXE_nodepool");

/// First line of a yaml block that is a complete nodepool.yaml.
const FULL_CONFIG_MARKER: &str = "# nodepool.yaml";
/// Trailing comment of a command the test does not run.
const UNTESTED_MARKER: &str = "# untested:";
/// The config path the examples may name; replaced by the test's config.
const DOC_CONFIG_PATH: &str = "/etc/nodepool/nodepool.yaml";

/// The build id the examples use.
const BUILD_ID: &str = "5a1c7e0f2b3d4e6f8091a2b3c4d5e6f7";
/// Nodes the examples act on (the seed creates ids up to the highest one).
const NODE_IDS: [&str; 3] = ["0000000001", "0000000002", "0000000003"];

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// One fenced block of a markdown file.
struct Block {
    file: String,
    line: usize,
    lang: String,
    lines: Vec<String>,
}

/// Fenced blocks of `text` (fences may be indented, e.g. inside list items).
fn blocks(file: &str, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if let Some(rest) = trimmed.strip_prefix("```") {
            match current.take() {
                Some(b) => out.push(b),
                None => {
                    current = Some(Block {
                        file: file.to_string(),
                        line: i + 1,
                        lang: rest.trim().to_string(),
                        lines: Vec::new(),
                    })
                }
            }
            continue;
        }
        if let Some(b) = current.as_mut() {
            b.lines.push(raw.to_string());
        }
    }
    assert!(current.is_none(), "{file}: unterminated code block");
    out
}

fn doc_blocks(name: &str) -> Vec<Block> {
    let path = docs_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    blocks(name, &text)
}

fn all_docs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(docs_dir())
        .expect("docs dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    names
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn full_config_examples_are_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut checked = 0;
    for name in all_docs() {
        for b in doc_blocks(&name) {
            if b.lang != "yaml" || b.lines.first().map(|l| l.trim()) != Some(FULL_CONFIG_MARKER) {
                continue;
            }
            let indent = b.lines[0].len() - b.lines[0].trim_start().len();
            let body: String = b
                .lines
                .iter()
                .map(|l| format!("{}\n", l.get(indent..).unwrap_or(l.trim_start())))
                .collect();
            let path = dir.path().join(format!("{}-{}.yaml", name, b.line));
            std::fs::write(&path, body).expect("write config");
            let out = std::process::Command::new(BIN)
                .arg("-c")
                .arg(&path)
                .arg("config-validate")
                .env("NO_COLOR", "1")
                .output()
                .expect("run nodepool");
            assert!(
                out.status.success(),
                "{}:{}: the example config is invalid\n{}",
                b.file,
                b.line,
                show(&out)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "only {checked} full config examples found; are the `{FULL_CONFIG_MARKER}` markers gone?"
    );
}

/// A command of a console block.
enum Step {
    Run(Vec<String>),
    Untested,
}

/// Splits a command line like a POSIX shell for the simple cases the docs use: words,
/// single and double quotes. Shell operators are refused (mark such lines untested).
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err("unterminated '".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch) => word.push(ch),
                            None => return Err("unterminated \"".into()),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err("unterminated \"".into()),
                    }
                }
            }
            '|' | '>' | '<' | ';' | '&' | '$' | '`' | '*' | '(' | ')' => {
                return Err(format!("shell syntax `{c}` is not supported"));
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The `$ nodepool …` steps of a console/shell block, with their line numbers.
fn steps(b: &Block) -> Vec<(usize, Step)> {
    if b.lang != "console" && b.lang != "shell" {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, raw) in b.lines.iter().enumerate() {
        let line_no = b.line + 1 + i;
        let Some(cmd) = raw.trim().strip_prefix("$ ") else {
            continue;
        };
        if !cmd.starts_with("nodepool ") {
            continue;
        }
        if let Some((_, reason)) = cmd.split_once(UNTESTED_MARKER) {
            assert!(
                !reason.trim().is_empty(),
                "{}:{line_no}: `{UNTESTED_MARKER}` needs a reason",
                b.file
            );
            out.push((line_no, Step::Untested));
            continue;
        }
        let words = split_words(cmd).unwrap_or_else(|e| {
            panic!(
                "{}:{line_no}: {e}; mark the line `{UNTESTED_MARKER} <reason>`",
                b.file
            )
        });
        out.push((line_no, Step::Run(words)));
    }
    out
}

fn config_yaml(settings: &ZkSettings) -> String {
    let mut y = String::from("zookeeper-servers:\n");
    for (host, port) in &settings.hosts {
        y.push_str(&format!(
            "  - host: {host}\n    port: {port}\n    chroot: {}\n",
            settings.chroot.as_deref().unwrap_or("/")
        ));
    }
    if let Some(tls) = &settings.tls {
        y.push_str(&format!(
            "zookeeper-tls:\n  ca: {}\n  cert: {}\n  key: {}\n",
            tls.ca.display(),
            tls.cert.display(),
            tls.key.display()
        ));
    }
    y.push_str(
        "labels:\n  - name: debian-bookworm\n\
         diskimages:\n  - name: debian-bookworm\n    elements: [debian-minimal]\n\
         providers:\n  - name: cloud1\n    cloud: cloud1\n    diskimages:\n\
         \x20     - name: debian-bookworm\n    pools:\n      - name: main\n\
         \x20       max-servers: 10\n        labels:\n          - name: debian-bookworm\n\
         \x20           diskimage: debian-bookworm\n            min-ram: 4096\n",
    );
    y
}

/// A fresh chroot with the records the examples name, and a config pointing at it.
struct Env {
    _zk: TestZk,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    async fn new() -> Env {
        let zk = TestZk::shared().await;
        let settings = zk.tls_settings().unwrap_or_else(|| zk.settings());
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("nodepool.yaml");
        std::fs::write(&config, config_yaml(&settings)).expect("write config");
        let client = zk.client().await;
        let store = ZkStore::new(client.clone());

        let last: u64 = NODE_IDS
            .iter()
            .filter_map(|id| id.parse().ok())
            .max()
            .unwrap_or(0);
        loop {
            let mut n = Node::new();
            n.state = NodeState::Ready;
            n.provider = Some("cloud1".into());
            n.pool = Some("main".into());
            n.node_type = vec!["debian-bookworm".into()];
            n.external_id = Some(format!("srv-{}", uuid::Uuid::new_v4().simple()));
            n.public_ipv4 = Some("192.0.2.10".into());
            n.username = Some("zuul".into());
            let id = store.create_node(&mut n).await.expect("create node");
            if id.sequence().unwrap_or(u64::MAX) >= last {
                break;
            }
        }

        let mut b = ImageBuild::new("debian-bookworm", BuildId::from(BUILD_ID));
        b.state = BuildState::Ready;
        b.builder = Some("builder.example.org".into());
        b.formats = vec!["qcow2".into()];
        // `ZkStore::create_build` picks a random id; the examples need a known one.
        client
            .create_persistent(&paths::build(&b.image, &b.id), &b.to_json())
            .await
            .expect("create build");
        loop {
            let mut u = ImageUpload::new(&b.image, b.id.clone(), "cloud1");
            u.state = UploadState::Ready;
            u.external_id = Some(format!("img-{}", uuid::Uuid::new_v4().simple()));
            u.external_name = Some("debian-bookworm-1700000000".into());
            u.format = Some("qcow2".into());
            let id = store.create_upload(&mut u).await.expect("create upload");
            if id.sequence().unwrap_or(u64::MAX) >= 1 {
                break;
            }
        }

        let mut r = NodeRequest::new(vec!["debian-bookworm".into()], "zuul-scheduler");
        store
            .create_request(&mut r, "200", false)
            .await
            .expect("create request");
        Env {
            _zk: zk,
            dir,
            config,
        }
    }

    async fn run(&self, words: &[String]) -> Output {
        let args: Vec<&str> = words[1..]
            .iter()
            .map(|w| {
                if w == DOC_CONFIG_PATH {
                    self.config.to_str().expect("utf-8 temp path")
                } else {
                    w.as_str()
                }
            })
            .collect();
        tokio::process::Command::new(BIN)
            .args(&args)
            .env("NODEPOOL_CONFIG", &self.config)
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run nodepool")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_examples_run() {
    let mut ran = 0;
    let mut untested = 0;
    for name in ["operation.md", "cli.md"] {
        for b in doc_blocks(name) {
            let steps = steps(&b);
            if steps.is_empty() {
                continue;
            }
            let env = Env::new().await;
            for (line, step) in steps {
                match step {
                    Step::Untested => untested += 1,
                    Step::Run(words) => {
                        let out = env.run(&words).await;
                        assert!(
                            out.status.success(),
                            "{name}:{line}: `{}` failed\n{}",
                            words.join(" "),
                            show(&out)
                        );
                        ran += 1;
                    }
                }
            }
        }
    }
    assert!(ran >= 20, "only {ran} CLI examples ran");
    assert!(
        untested >= 1,
        "the untested marker is never used; is it parsed?"
    );
}

#[test]
fn splitter_handles_quotes_and_refuses_shell_syntax() {
    assert_eq!(
        split_words(r#"nodepool hold 1 --reason "a \"b\" c" 'd e'"#).unwrap(),
        vec!["nodepool", "hold", "1", "--reason", "a \"b\" c", "d e"]
    );
    assert!(split_words("nodepool list | grep x").is_err());
    assert!(split_words("nodepool list > x").is_err());
}
