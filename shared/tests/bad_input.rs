//! Hostile input for every reader of external data: "clear error, no panic, nothing lost".
//!
//! * ZooKeeper records (`Node`, `NodeRequest`, `ImageBuild`, `ImageUpload`, `Component`):
//!   golden records mutated (truncated, bytes flipped/inserted/deleted, wrong type per
//!   key, huge numbers, NaN strings, deep nesting, non-UTF-8) and random bytes. Every
//!   error names the record; every accepted record re-serialises to bytes that read back
//!   to the same bytes. Node records are also read as the tree cache reads them
//!   (`CompactNode::from_json`), which must give the same record or the same error.
//! * `Config::from_yaml_str`: mutated fixtures and the docs/configuration.md example;
//!   every problem names `origin:line:col` within the file.
//! * clouds.yaml: mutated copies; every error names the file (and line:col for syntax).
//! * Listing renderers: records with odd values (control characters, wide characters,
//!   NaN/huge times, empty everything) render as text and JSON, and the JSON parses.
//! * Through ZooKeeper: corrupt znodes are skipped by `ZkStore` lists (the rest is
//!   returned), `get` gives `ZkError::Corrupt` naming the path, `TreeCache` counts them,
//!   and a later valid write of the same znode is picked up.
//!
//! Fixed seeds; no timing assertions.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nodepool_shared::cloud::clouds_yaml::{CloudsFile, CloudsYamlError};
use nodepool_shared::config::Config;
use nodepool_shared::listing::{
    dib_image_list, image_list, label_list, node_list, request_list, NodeColumns, OutputFormat,
    Table,
};
use nodepool_shared::model::{
    paths, BuildId, CompactNode, Component, ComponentKind, ImageBuild, ImageUpload, ModelError,
    Node, NodeId, NodeRequest, RequestId, UploadId,
};
use nodepool_shared::testing::TestZk;
use nodepool_shared::zk::{TreeCache, ZkError, ZkStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

const SEED: u64 = 0x6e6f_6465_706f_6f6c;

// ------------------------------------------------------------------ mutators

/// Bytes that tend to break parsers.
const NASTY: &[u8] = b"{}[]\",:\\0-+e.9 \n\t\x00\xff\xc3\x80\xed\xa0\x80";

/// One random byte-level mutation of `seed`.
fn mutate_bytes(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    if v.is_empty() {
        v.push(b'{');
    }
    let len = v.len();
    match rng.random_range(0..7) {
        0 => v.truncate(rng.random_range(0..len)),
        1 => {
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..v.len());
                v[i] ^= rng.random_range(1..=255u8);
            }
        }
        2 => {
            let i = rng.random_range(0..=len);
            let n = rng.random_range(1..8);
            let ins: Vec<u8> = (0..n)
                .map(|_| NASTY[rng.random_range(0..NASTY.len())])
                .collect();
            v.splice(i..i, ins);
        }
        3 => {
            let a = rng.random_range(0..len);
            let b = rng.random_range(a..=len.min(a + 40));
            v.drain(a..b);
        }
        4 => {
            let a = rng.random_range(0..len);
            let b = rng.random_range(a..=len.min(a + 40));
            let dup = v[a..b].to_vec();
            v.splice(b..b, dup);
        }
        5 => {
            let i = rng.random_range(0..len);
            v[i] = NASTY[rng.random_range(0..NASTY.len())];
        }
        _ => {
            let n = rng.random_range(0..64);
            v = (0..n).map(|_| rng.random()).collect();
        }
    }
    v
}

/// JSON fragments of the wrong type or shape, placed as the value of one key.
fn hostile_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "null",
        "true",
        "0",
        "-1",
        "1.5",
        "-0.0",
        "1e308",
        "-1e308",
        "1e999",
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "\"\"",
        "\"NaN\"",
        "\"Infinity\"",
        "\"-inf\"",
        "\"x\"",
        "\"\\ud800\"",
        "\"\\u0000\\u202e\\u00e9\"",
        "[]",
        "[1, \"a\", null]",
        "[[[]]]",
        "{}",
        "{\"a\": {\"b\": []}}",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    v.push(format!("{}{}", "[".repeat(300), "]".repeat(300)));
    v.push(format!("{}1{}", "{\"a\": ".repeat(200), "}".repeat(200)));
    v.push(format!("\"{}\"", "x".repeat(100_000)));
    v
}

/// `object` serialised with `key`'s value replaced by the raw JSON `fragment`.
fn with_raw_value(object: &Map<String, Value>, key: &str, fragment: &str) -> Vec<u8> {
    const MARK: &str = "\u{1}HOSTILE\u{1}";
    let mut o = object.clone();
    o.insert(key.to_string(), Value::String(MARK.into()));
    let text = serde_json::to_string(&Value::Object(o)).unwrap();
    let quoted = serde_json::to_string(MARK).unwrap();
    text.replacen(&quoted, fragment, 1).into_bytes()
}

/// `object` serialised with one byte of a string value replaced by invalid UTF-8.
fn with_invalid_utf8(rng: &mut StdRng, object: &Map<String, Value>) -> Vec<u8> {
    let mut text = serde_json::to_vec(&Value::Object(object.clone())).unwrap();
    let quotes: Vec<usize> = text
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'"')
        .map(|(i, _)| i)
        .collect();
    if quotes.len() >= 2 {
        let q = quotes[rng.random_range(0..quotes.len() - 1)];
        text.insert(q + 1, [0xff, 0xc3, 0x80, 0xed][rng.random_range(0..4)]);
    }
    text
}

// ------------------------------------------------------------------ record readers

/// Reads bytes into a record and writes it back (`None` = no record).
type ReadFn = Box<dyn Fn(&[u8]) -> Result<Option<Vec<u8>>, ModelError>>;

/// A record reader under test: reads bytes, and on success writes the record back.
struct Reader {
    /// What errors must name, e.g. `node 0000004351`.
    record: String,
    read: ReadFn,
}

fn node_reader(id: &str) -> Reader {
    let id = NodeId::from(id);
    Reader {
        record: format!("node {id}"),
        read: Box::new(move |d| Ok(Node::from_json(&id, d)?.map(|n| n.to_json()))),
    }
}

/// A node record read as the tree cache reads it (`CompactNode::from_json`), which must
/// give what `Node::from_json` gives: the same record written back, or the same error.
fn compact_node_reader(id: &str) -> Reader {
    let id = NodeId::from(id);
    Reader {
        record: format!("node {id}"),
        read: Box::new(move |d| {
            let via_node = Node::from_json(&id, d).map(|n| n.map(|n| n.to_json()));
            let compact = CompactNode::from_json(&id, d).map(|n| n.map(|n| n.to_node().to_json()));
            assert_eq!(
                format!("{compact:?}"),
                format!("{via_node:?}"),
                "CompactNode::from_json differs from Node::from_json on {}",
                show(d)
            );
            compact
        }),
    }
}

fn request_reader(id: &str) -> Reader {
    let id = RequestId::from(id);
    Reader {
        record: format!("request {id}"),
        read: Box::new(move |d| Ok(NodeRequest::from_json(&id, d)?.map(|r| r.to_json()))),
    }
}

fn build_reader() -> Reader {
    let id = BuildId::from("0000000042");
    Reader {
        record: format!("image build ubuntu/{id}"),
        read: Box::new(move |d| Ok(ImageBuild::from_json("ubuntu", &id, d)?.map(|b| b.to_json()))),
    }
}

fn upload_reader() -> Reader {
    let b = BuildId::from("0000000042");
    let u = UploadId::from("0000000007");
    Reader {
        record: format!("image upload ubuntu/{b}/cloud1/{u}"),
        read: Box::new(move |d| {
            Ok(ImageUpload::from_json("ubuntu", &b, "cloud1", &u, d)?.map(|x| x.to_json()))
        }),
    }
}

fn component_reader(kind: ComponentKind, name: &str) -> Reader {
    let name = name.to_string();
    Reader {
        record: format!("{kind} component {name}"),
        read: Box::new(move |d| Ok(Component::from_json(kind, &name, d)?.map(|c| c.to_json()))),
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn golden(name: &str) -> Value {
    let p = golden_dir().join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// Every seed record: a reader and the JSON object it was captured with.
fn seeds() -> Vec<(Reader, Map<String, Value>)> {
    let mut out = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let g = golden(&name);
        let data = |g: &Value| g["data"].as_object().unwrap().clone();
        let last = |g: &Value| {
            g["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        };
        if name.starts_with("node-") {
            out.push((node_reader(&last(&g)), data(&g)));
            out.push((compact_node_reader(&last(&g)), data(&g)));
        } else if name.starts_with("request-") {
            out.push((request_reader(&last(&g)), data(&g)));
        } else if name == "components.json" {
            for (kind, k) in [
                ("launcher", ComponentKind::Launcher),
                ("pool", ComponentKind::Pool),
            ] {
                out.push((component_reader(k, &last(&g[kind])), data(&g[kind])));
            }
        }
    }
    // No golden captures of builds and uploads: use the model's own output.
    let mut b = ImageBuild::new("ubuntu", BuildId::from("0000000042"));
    b.builder = Some("builder01.example.com".into());
    b.formats = vec!["qcow2".into(), "raw".into()];
    b.state_time = 1_700_000_000.5;
    let obj = |bytes: Vec<u8>| match serde_json::from_slice::<Value>(&bytes).unwrap() {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    };
    out.push((build_reader(), obj(b.to_json())));
    let mut u = ImageUpload::new("ubuntu", BuildId::from("0000000042"), "cloud1");
    u.external_id = Some("ext-1".into());
    u.external_name = Some("ubuntu-1700000000".into());
    out.push((upload_reader(), obj(u.to_json())));
    assert!(out.len() >= 10, "seeds: {}", out.len());
    out
}

fn show(data: &[u8]) -> String {
    let s = String::from_utf8_lossy(data);
    if s.len() > 300 {
        format!(
            "{}… ({} bytes)",
            &s[..s.floor_char_boundary(300)],
            data.len()
        )
    } else {
        s.into_owned()
    }
}

/// Feeds `data` to `r` and checks the contract; returns whether it was accepted.
fn check_record(r: &Reader, data: &[u8], mutated_key: Option<&str>) -> bool {
    let res = catch_unwind(AssertUnwindSafe(|| (r.read)(data)))
        .unwrap_or_else(|_| panic!("{}: reader panicked on {}", r.record, show(data)));
    match res {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&r.record),
                "error does not name the record `{}`: {msg}\ninput: {}",
                r.record,
                show(data)
            );
            if let (Some(k), ModelError::Field { key, .. }) = (mutated_key, &e) {
                assert!(
                    key.starts_with(k),
                    "error names key `{key}`, mutated `{k}`: {msg}"
                );
            }
            false
        }
        Ok(None) => {
            assert!(
                data.iter().all(u8::is_ascii_whitespace),
                "{}: only empty data means `no record`: {:?}",
                r.record,
                show(data)
            );
            false
        }
        Ok(Some(out)) => {
            // Nothing lost: what we would write back reads back to the same bytes.
            let again = (r.read)(&out)
                .unwrap_or_else(|e| panic!("re-reading our own output failed: {e}"))
                .expect("our output is not empty");
            assert_eq!(
                show(&again),
                show(&out),
                "{}: not stable after a write-back of {}",
                r.record,
                show(data)
            );
            true
        }
    }
}

#[test]
fn records_survive_wrong_types_per_key() {
    let hostile = hostile_values();
    let mut rng = StdRng::seed_from_u64(SEED);
    let (mut cases, mut accepted) = (0, 0);
    for (reader, object) in seeds() {
        // The seed itself is accepted.
        let clean = serde_json::to_vec(&Value::Object(object.clone())).unwrap();
        assert!(check_record(&reader, &clean, None), "{}", reader.record);
        let keys: Vec<String> = object.keys().cloned().collect();
        for key in &keys {
            for frag in &hostile {
                let data = with_raw_value(&object, key, frag);
                cases += 1;
                accepted += usize::from(check_record(&reader, &data, Some(key)));
            }
            // A key removed.
            let mut o = object.clone();
            o.remove(key);
            cases += 1;
            accepted += usize::from(check_record(
                &reader,
                &serde_json::to_vec(&o).unwrap(),
                None,
            ));
        }
        // Unknown keys (hostile values) are kept and written back.
        for frag in &hostile {
            let data = with_raw_value(&object, "zz_unknown", frag);
            cases += 1;
            accepted += usize::from(check_record(&reader, &data, Some("zz_unknown")));
        }
        for _ in 0..50 {
            let data = with_invalid_utf8(&mut rng, &object);
            cases += 1;
            accepted += usize::from(check_record(&reader, &data, None));
        }
    }
    eprintln!("records: {cases} wrong-type cases, {accepted} accepted");
    assert!(cases > 3000);
}

#[test]
fn records_survive_random_mutations() {
    let mut rng = StdRng::seed_from_u64(SEED ^ 1);
    let (mut cases, mut accepted) = (0, 0);
    for (reader, object) in seeds() {
        let clean = serde_json::to_vec(&Value::Object(object)).unwrap();
        for _ in 0..400 {
            let mut data = mutate_bytes(&mut rng, &clean);
            // Stack a few mutations sometimes.
            for _ in 0..rng.random_range(0..3) {
                data = mutate_bytes(&mut rng, &data);
            }
            cases += 1;
            accepted += usize::from(check_record(&reader, &data, None));
        }
    }
    eprintln!("records: {cases} random mutations, {accepted} accepted");
    assert!(cases > 3000);
}

#[test]
fn non_objects_and_deep_nesting_are_named_errors() {
    let r = node_reader("0000000001");
    for data in [
        b"null".to_vec(),
        b"[]".to_vec(),
        b"42".to_vec(),
        b"\"node\"".to_vec(),
        b"{".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
        "[".repeat(100_000).into_bytes(),
        "{\"a\":".repeat(100_000).into_bytes(),
        vec![0u8; 1000],
    ] {
        assert!(!check_record(&r, &data, None));
    }
}

// ------------------------------------------------------------------ config

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The YAML inputs to mutate: every config fixture and the docs' example blocks.
fn config_seeds() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dir = repo_file("tests/fixtures/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        out.push((
            f.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read_to_string(&f).unwrap(),
        ));
    }
    let doc = std::fs::read_to_string(repo_file("../docs/configuration.md")).unwrap();
    let mut block: Option<String> = None;
    let mut n = 0;
    for line in doc.lines() {
        match (&mut block, line.trim_end()) {
            (None, "```yaml") => block = Some(String::new()),
            (Some(b), "```") => {
                n += 1;
                out.push((format!("configuration.md#{n}"), std::mem::take(b)));
                block = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(n > 0, "docs/configuration.md has yaml blocks");
    out
}

/// YAML-aware mutations on top of the byte ones.
fn mutate_yaml(rng: &mut StdRng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    if lines.is_empty() {
        lines.push("labels:".into());
    }
    let i = rng.random_range(0..lines.len());
    match rng.random_range(0..8) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => lines[i] = format!("  {}", lines[i]),
        3 => lines[i] = lines[i].trim_start().to_string(),
        4 => {
            // Replace a scalar value with a hostile one.
            let hostile = [
                "",
                "~",
                "[]",
                "{}",
                "-1",
                "1e999",
                ".nan",
                "-.inf",
                "99999999999999999999999",
                "yes",
                "0x1F",
                "'",
                "\"",
                "&a",
                "*a",
                "!!binary AAAA",
                "!!python/object:os.system",
                "<<: *nothing",
                "|",
                ">-",
                "@",
                "`",
                "%YAML 1.1",
                "\t",
            ];
            let h = hostile[rng.random_range(0..hostile.len())];
            if let Some((k, _)) = lines[i].split_once(": ") {
                lines[i] = format!("{k}: {h}");
            } else {
                lines[i] = format!("{}{h}", lines[i]);
            }
        }
        5 => lines.truncate(i),
        6 => lines[i] = format!("{}:", lines[i]),
        _ => {
            let bytes = mutate_bytes(rng, text.as_bytes());
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    lines.join("\n")
}

fn check_config(text: &str) -> bool {
    let res = catch_unwind(AssertUnwindSafe(|| {
        Config::from_yaml_str(text, "fuzz.yaml")
    }))
    .unwrap_or_else(|_| panic!("Config::from_yaml_str panicked on:\n{text}"));
    match res {
        Ok(_) => true,
        Err(e) => {
            let problems = e.problems();
            assert!(!problems.is_empty(), "an error without problems: {e}");
            let nlines = text.lines().count() as u64 + 1;
            for p in problems {
                assert_eq!(p.origin, "fuzz.yaml", "{p}");
                assert!(!p.message.trim().is_empty(), "empty message: {p}");
                assert!(
                    p.line <= nlines,
                    "line {} beyond the text: {p}\n{text}",
                    p.line
                );
                assert!(p.to_string().starts_with("fuzz.yaml:"), "{p}");
            }
            false
        }
    }
}

#[test]
fn config_survives_mutations() {
    let mut rng = StdRng::seed_from_u64(SEED ^ 2);
    let (mut cases, mut accepted) = (0, 0);
    for (_, text) in config_seeds() {
        for _ in 0..250 {
            let mut t = mutate_yaml(&mut rng, &text);
            for _ in 0..rng.random_range(0..3) {
                t = mutate_yaml(&mut rng, &t);
            }
            cases += 1;
            accepted += usize::from(check_config(&t));
        }
    }
    for text in [
        String::new(),
        "---\n...\n".into(),
        "[".repeat(10_000),
        "{a: ".repeat(10_000),
        "- ".repeat(10_000),
        "labels: !!binary AAAA\n".into(),
        "a: &a [*a]\n".into(),
        "\u{feff}labels: []\n".into(),
        "labels:\n  - name: \u{0}\n".into(),
    ] {
        cases += 1;
        accepted += usize::from(check_config(&text));
    }
    eprintln!("config: {cases} mutated files, {accepted} accepted");
    assert!(cases > 2000);
}

// ------------------------------------------------------------------ clouds.yaml

const CLOUDS: &str = "clouds:
  devstack:
    auth:
      auth_url: http://127.0.0.1:5000/v3
      username: demo
      password: s3cr3t-pass
      project_name: demo
      user_domain_name: Default
      project_domain_id: default
    region_name: RegionOne
    interface: internal
    image_format: raw
    verify: no
    cacert: /etc/ssl/ca.pem
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: http://127.0.0.1:5000
      application_credential_id: abc123
      application_credential_secret: 987654
    regions:
      - name: R1
      - R2
";

fn check_clouds(text: &str) {
    let path = Path::new("/etc/openstack/clouds.yaml");
    let res = catch_unwind(AssertUnwindSafe(|| {
        let f = CloudsFile::parse(text, path)?;
        // Validate every entry as a provider would.
        let names: Vec<String> = f.names().map(String::from).collect();
        let mut errs = Vec::new();
        for n in &names {
            if let Err(e) = f.cloud(n) {
                errs.push(e);
            }
        }
        if let Err(e) = f.cloud("no-such-cloud") {
            errs.push(e);
        }
        Ok::<_, CloudsYamlError>(errs)
    }))
    .unwrap_or_else(|_| panic!("clouds.yaml parse panicked on:\n{text}"));
    let errs = match res {
        Ok(errs) => errs,
        Err(e) => {
            assert!(
                matches!(e, CloudsYamlError::Syntax { .. }),
                "parse only fails on syntax: {e}"
            );
            vec![e]
        }
    };
    for e in errs {
        let msg = e.to_string();
        assert!(
            msg.contains("/etc/openstack/clouds.yaml"),
            "error does not name the file: {msg}"
        );
        assert!(
            !msg.contains("s3cr3t-pass") && !msg.contains("987654"),
            "error shows a secret: {msg}"
        );
        if let CloudsYamlError::Syntax { line, .. } = e {
            assert!(line as usize <= text.lines().count() + 1, "{msg}");
        }
    }
}

#[test]
fn clouds_yaml_survives_mutations() {
    let mut rng = StdRng::seed_from_u64(SEED ^ 3);
    for _ in 0..2000 {
        let mut t = mutate_yaml(&mut rng, CLOUDS);
        for _ in 0..rng.random_range(0..3) {
            t = mutate_yaml(&mut rng, &t);
        }
        check_clouds(&t);
    }
    for t in [
        "",
        "clouds:",
        "clouds: 5",
        "clouds: [1]",
        "- a",
        "clouds:\n  x: ~\n",
    ] {
        check_clouds(t);
    }
    // Deep nesting must be a syntax error, not a stack overflow.
    let mut deep_block = String::from("clouds:\n  c:\n    auth:\n      x:\n");
    for i in 0..200 {
        deep_block.push_str(&" ".repeat(8 + 2 * i));
        deep_block.push_str("- \n");
    }
    for t in [
        format!(
            "clouds:\n  c:\n    auth: {}{}\n",
            "[".repeat(5000),
            "]".repeat(5000)
        ),
        format!("clouds:\n  c:\n    regions: {}\n", "{a: ".repeat(5000)),
        deep_block,
    ] {
        check_clouds(&t);
    }
}

// ------------------------------------------------------------------ listings

fn odd_strings() -> Vec<String> {
    vec![
        String::new(),
        " ".into(),
        "a\nb\r\nc".into(),
        "\t\u{0}\u{1b}[31mred".into(),
        "日本語のホスト名".into(),
        "e\u{301}\u{301}\u{301}".into(),
        "\u{202e}evil".into(),
        "👩‍👩‍👧‍👦".into(),
        "x".repeat(5000),
        "\"quoted\" 'single' \\back".into(),
        "<script>alert(1)</script>".into(),
    ]
}

fn odd_floats() -> Vec<f64> {
    vec![
        0.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e308,
        -1e308,
        f64::MIN_POSITIVE,
        4e18,
    ]
}

fn render_all(t: &Table, what: &str) {
    let text = t.render(OutputFormat::Text, None);
    assert!(!text.is_empty(), "{what}");
    let json = t.render(OutputFormat::Json, None);
    serde_json::from_str::<Value>(&json)
        .unwrap_or_else(|e| panic!("{what}: JSON output does not parse: {e}\n{json}"));
}

#[test]
fn listings_render_odd_records() {
    let strings = odd_strings();
    let floats = odd_floats();
    let mut nodes = Vec::new();
    let mut requests = Vec::new();
    let mut builds = Vec::new();
    let mut uploads = Vec::new();
    let mut components = Vec::new();
    for (i, s) in strings.iter().enumerate() {
        for (j, f) in floats.iter().enumerate() {
            let k = (i * floats.len() + j) as u64;
            let mut n = Node::new();
            n.id = NodeId::from_sequence(k);
            n.provider = Some(s.clone());
            n.node_type = vec![s.clone(), String::new()];
            n.hostname = Some(s.clone());
            n.external_id = Some(s.clone());
            n.comment = Some(s.clone());
            n.state_time = *f;
            n.created_time = Some(*f);
            nodes.push(n);
            let mut r = NodeRequest::new(vec![s.clone()], s.clone());
            r.id = RequestId::new("100", k);
            r.declined_by = vec![s.clone()];
            r.state_time = *f;
            requests.push(r);
            let mut b = ImageBuild::new(s.clone(), BuildId::from(format!("{k:010}").as_str()));
            b.state_time = *f;
            b.builder = Some(s.clone());
            b.formats = vec![s.clone()];
            builds.push(b);
            let mut u = ImageUpload::new(
                s.clone(),
                BuildId::from(format!("{k:010}").as_str()),
                s.clone(),
            );
            u.state_time = *f;
            u.external_name = Some(s.clone());
            uploads.push(u);
            let mut c = Component::new(ComponentKind::Pool, s.clone(), s.clone());
            if let Some(p) = c.pool.as_mut() {
                p.supported_labels = vec![s.clone()];
            }
            components.push(c);
        }
    }
    for now in odd_floats() {
        for cols in [NodeColumns::Brief, NodeColumns::Detail] {
            render_all(
                &node_list(nodes.iter().map(|n| (n, true)), now, cols),
                "node-list",
            );
        }
        render_all(&image_list(uploads.iter(), now), "image-list");
        let paused: HashSet<String> = strings.iter().cloned().collect();
        render_all(
            &dib_image_list(builds.iter(), &paused, now),
            "dib-image-list",
        );
    }
    render_all(&request_list(requests.iter()), "request-list");
    render_all(&label_list(components.iter()), "label-list");
    // Empty listings.
    render_all(
        &node_list(std::iter::empty(), 0.0, NodeColumns::Brief),
        "empty",
    );
    render_all(&request_list(std::iter::empty()), "empty");
}

// ------------------------------------------------------------------ through ZooKeeper

const BOUND: Duration = Duration::from_secs(60);

#[tokio::test]
async fn corrupt_znodes_are_skipped_named_counted_and_recovered() {
    let zk = TestZk::shared().await;
    let c = zk.client().await;
    let store = ZkStore::new(c.clone());
    let cache = TreeCache::start(c.clone());
    assert!(cache.wait_synced(BOUND).await);
    let garbage: &[u8] = b"{\"state\": \xff\xfe";

    // Nodes: one good, one corrupt.
    let mut good = Node::new();
    let good_id = store.create_node(&mut good).await.unwrap();
    let bad_node = NodeId::from_sequence(999_999);
    c.create_persistent(&paths::node(&bad_node), garbage)
        .await
        .unwrap();

    // Requests.
    let mut req = NodeRequest::new(vec!["label".into()], "zuul");
    let good_req = store.create_request(&mut req, "100", false).await.unwrap();
    let bad_req = RequestId::new("100", 999_999);
    c.create_persistent(&paths::request(&bad_req), br#"{"state": ["x"]}"#)
        .await
        .unwrap();

    // Builds and uploads.
    let mut build = ImageBuild::new("img", BuildId::from("0000000001"));
    let good_build = store.create_build(&mut build).await.unwrap();
    let bad_build = BuildId::from("0000000002");
    c.create_persistent(&paths::build("img", &bad_build), b"[1, 2")
        .await
        .unwrap();
    let mut up = ImageUpload::new("img", good_build.clone(), "cloud1");
    let good_up = store.create_upload(&mut up).await.unwrap();
    let bad_up = UploadId::from("0000009999");
    let bad_up_path = paths::upload("img", &good_build, "cloud1", &bad_up);
    c.create_persistent(&bad_up_path, b"\"just a string\"")
        .await
        .unwrap();

    // Components.
    let comp = Component::new(ComponentKind::Launcher, "host-a", "11.0.0");
    let (good_comp, _) = store.create_component(&comp).await.unwrap();
    let bad_comp = "host-b0000000099";
    c.create_persistent(
        &paths::component(ComponentKind::Launcher, bad_comp),
        br#"{"kind": "launcher", "state": 7}"#,
    )
    .await
    .unwrap();

    // Lists skip the corrupt ones and return the rest.
    let ids = |v: Vec<(Node, _)>| v.into_iter().map(|(n, _)| n.id).collect::<Vec<_>>();
    assert_eq!(ids(store.nodes().await.unwrap()), vec![good_id.clone()]);
    let reqs: Vec<RequestId> = store
        .requests()
        .await
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.id)
        .collect();
    assert_eq!(reqs, vec![good_req.clone()]);
    let builds: Vec<BuildId> = store
        .builds("img")
        .await
        .unwrap()
        .into_iter()
        .map(|(b, _)| b.id)
        .collect();
    assert_eq!(builds, vec![good_build.clone()]);
    let ups: Vec<UploadId> = store
        .uploads("img", &good_build, "cloud1")
        .await
        .unwrap()
        .into_iter()
        .map(|(u, _)| u.id)
        .collect();
    assert_eq!(ups, vec![good_up.clone()]);
    let comps: Vec<String> = store
        .components(ComponentKind::Launcher)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(comps, vec![good_comp.clone()]);

    // `get` gives a typed error naming the path.
    let corrupt = |r: Result<_, ZkError>, path: String| match r {
        Err(e @ ZkError::Corrupt(_)) => {
            assert!(e.to_string().contains(&path), "{e} does not name {path}");
        }
        Err(e) => panic!("{path}: expected Corrupt, got {e}"),
        Ok(_) => panic!("{path}: corrupt data read as a record"),
    };
    corrupt(
        store.get_node(&bad_node).await.map(|_| ()),
        paths::node(&bad_node),
    );
    corrupt(
        store.get_request(&bad_req).await.map(|_| ()),
        paths::request(&bad_req),
    );
    corrupt(
        store.get_build("img", &bad_build).await.map(|_| ()),
        paths::build("img", &bad_build),
    );
    corrupt(
        store
            .get_upload("img", &good_build, "cloud1", &bad_up)
            .await
            .map(|_| ()),
        bad_up_path.clone(),
    );
    corrupt(
        store
            .get_component(ComponentKind::Launcher, bad_comp)
            .await
            .map(|_| ()),
        paths::component(ComponentKind::Launcher, bad_comp),
    );

    // The cache skips and counts them, and has the good ones.
    let bad_paths: HashSet<String> = [
        paths::node(&bad_node),
        paths::request(&bad_req),
        paths::build("img", &bad_build),
        bad_up_path.clone(),
        paths::component(ComponentKind::Launcher, bad_comp),
    ]
    .into_iter()
    .collect();
    let mut gen = cache.watch_generation();
    tokio::time::timeout(BOUND, async {
        while cache.corrupt_paths().into_iter().collect::<HashSet<_>>() != bad_paths
            || cache.node(&good_id).is_none()
            || cache.request(&good_req).is_none()
            || cache.build("img", &good_build).is_none()
            || cache.uploads().len() != 1
            || cache.components(ComponentKind::Launcher).len() != 1
        {
            tokio::select! {
                _ = gen.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "cache: corrupt {:?}, nodes {}, requests {}",
            cache.corrupt_paths(),
            cache.nodes().len(),
            cache.requests().len()
        )
    });
    assert_eq!(cache.corrupt_records(), 5);
    assert!(cache.node(&bad_node).is_none());

    // A later valid write of the same znodes is picked up everywhere.
    let mut fixed = Node::new();
    fixed.id = bad_node.clone();
    store.store_node(&fixed, None).await.unwrap();
    let mut fixed_req = NodeRequest::new(vec!["x".into()], "zuul");
    fixed_req.id = bad_req.clone();
    store.store_request(&fixed_req, None).await.unwrap();
    let fixed_build = ImageBuild::new("img", bad_build.clone());
    store.store_build(&fixed_build, None).await.unwrap();
    let mut fixed_up = ImageUpload::new("img", good_build.clone(), "cloud1");
    fixed_up.id = bad_up.clone();
    store.store_upload(&fixed_up, None).await.unwrap();
    store.update_component(bad_comp, &comp, None).await.unwrap();

    assert_eq!(store.nodes().await.unwrap().len(), 2);
    assert_eq!(store.requests().await.unwrap().len(), 2);
    assert_eq!(store.builds("img").await.unwrap().len(), 2);
    assert_eq!(
        store
            .uploads("img", &good_build, "cloud1")
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .components(ComponentKind::Launcher)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(store.get_node(&bad_node).await.unwrap().is_some());
    tokio::time::timeout(BOUND, async {
        while cache.corrupt_records() != 0
            || cache.node(&bad_node).is_none()
            || cache.request(&bad_req).is_none()
            || cache.build("img", &bad_build).is_none()
            || cache.uploads().len() != 2
            || cache.components(ComponentKind::Launcher).len() != 2
        {
            tokio::select! {
                _ = gen.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "cache did not pick up the fixes: {:?}",
            cache.corrupt_paths()
        )
    });
    cache.stop();
    c.close().await;
}

/// Whether rewriting `key` from the hostile `frag` to something else is a documented
/// normalisation (as Python Nodepool reads records: defaults for null, float times,
/// `hold_expiration` coerced to int, `ssh_port` mirrors `connection_port`, a string `type`
/// is a list of one).
fn documented_normalisation(key: &str, frag: &str) -> bool {
    let numeric = frag.parse::<f64>().is_ok();
    frag == "null"
        || frag == "-0.0"
        || (key.ends_with("_time") && numeric)
        || key == "hold_expiration"
        || key == "ssh_port"
        || (key == "type" && frag.starts_with('"'))
        || (key == "formats" && frag == "\"\"")
}

#[test]
fn accepted_records_keep_every_value() {
    let hostile = hostile_values();
    let mut lost = Vec::new();
    for (reader, object) in seeds() {
        for key in object.keys().map(String::as_str).chain(["zz_unknown"]) {
            for frag in &hostile {
                let data = with_raw_value(&object, key, frag);
                let Ok(Some(out)) = (reader.read)(&data) else {
                    continue;
                };
                let input: Value = serde_json::from_slice(&data).unwrap();
                let output: Value = serde_json::from_slice(&out).unwrap();
                if input.get(key) != output.get(key) && !documented_normalisation(key, frag) {
                    let short: String = frag.chars().take(40).collect();
                    lost.push(format!(
                        "{}: `{key}` = {short} written back as {:?}",
                        reader.record,
                        output
                            .get(key)
                            .map(|v| v.to_string().chars().take(40).collect::<String>())
                    ));
                }
            }
        }
    }
    assert!(
        lost.is_empty(),
        "values lost on a read/write cycle:\n{}",
        lost.join("\n")
    );
}
