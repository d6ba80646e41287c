//! Top-level `diskimages`: reading each entry and resolving `parent` inheritance.
//!
//! A child starts from its (fully resolved) parent: `elements` are appended to the
//! parent's, `env-vars` are merged key by key (child wins), every other key the child sets
//! replaces the parent's. `name`, `parent` and `abstract` are never inherited. Abstract
//! images only serve as parents and are left out of [`super::Config::diskimages`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::reader::{Ctx, MapReader};
use super::validate::Kind;
use super::yaml::{Node, Pos};

/// One buildable diskimage, with inheritance resolved and defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct DiskImage {
    /// `name` (required).
    pub name: String,
    /// `parent`, if any (already applied; kept for information).
    pub parent: Option<String>,
    /// `dib-cmd` (default `disk-image-create`); `%p` is replaced by the builder.
    pub dib_cmd: String,
    /// `pause` (default false): no scheduled or manual builds.
    pub pause: bool,
    /// `elements` (parents' first).
    pub elements: Vec<String>,
    /// `formats` wanted in addition to the providers' upload formats.
    pub formats: Vec<String>,
    /// `keep-formats`: formats kept on disk despite `delete-after-upload`.
    pub keep_formats: Vec<String>,
    /// `delete-after-upload` (default false).
    pub delete_after_upload: bool,
    /// `release` (string or integer, kept as a string) → `DIB_RELEASE`.
    pub release: Option<String>,
    /// `rebuild-age` (default 86400 s).
    pub rebuild_age: Duration,
    /// `env-vars` (merged with the parents' and the secure file's).
    pub env_vars: BTreeMap<String, String>,
    /// `username` (default `zuul`).
    pub username: String,
    /// `python-path` (default `auto`).
    pub python_path: String,
    /// `shell-type`.
    pub shell_type: Option<String>,
    /// `build-timeout` (default 28800 s).
    pub build_timeout: Duration,
    /// `metadata`: default image properties for uploads.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// An entry as written, before inheritance (unset keys are `None`).
#[derive(Clone, Debug, Default)]
pub(crate) struct RawDiskImage {
    pub name: String,
    pub is_abstract: bool,
    pub parent: Option<String>,
    pub parent_pos: Pos,
    pub path: String,
    pub dib_cmd: Option<String>,
    pub pause: Option<bool>,
    pub elements: Vec<String>,
    pub formats: Option<Vec<String>>,
    pub keep_formats: Option<Vec<String>>,
    pub delete_after_upload: Option<bool>,
    pub release: Option<String>,
    pub rebuild_age: Option<Duration>,
    pub env_vars: BTreeMap<String, String>,
    pub username: Option<String>,
    pub python_path: Option<String>,
    pub shell_type: Option<String>,
    pub build_timeout: Option<Duration>,
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

pub(crate) fn parse_raw(cx: &mut Ctx, path: &str, node: &Node) -> Option<RawDiskImage> {
    let mut r = MapReader::new(cx, node, path)?;
    let name = r.req_string(cx, "name");
    let is_abstract = r.boolean(cx, "abstract").unwrap_or(false);
    if let Some(n) = &name {
        cx.define(
            Kind::DiskImage,
            "",
            n,
            r.value_pos("name"),
            &r.key_path("name"),
        );
        if is_abstract {
            cx.marks.abstract_images.push(n.clone());
        }
    }
    let parent_pos = r.value_pos("parent");
    let parent = r.string(cx, "parent");
    if let Some(p) = &parent {
        cx.refer(Kind::DiskImage, "", p, parent_pos, &r.key_path("parent"));
    }
    let raw = RawDiskImage {
        name: name.clone().unwrap_or_default(),
        is_abstract,
        parent,
        parent_pos,
        path: path.to_string(),
        dib_cmd: r.string(cx, "dib-cmd"),
        pause: r.boolean(cx, "pause"),
        elements: r.str_list(cx, "elements").unwrap_or_default(),
        formats: r.str_list(cx, "formats"),
        keep_formats: r.str_list(cx, "keep-formats"),
        delete_after_upload: r.boolean(cx, "delete-after-upload"),
        release: r.str_or_int(cx, "release"),
        rebuild_age: r.seconds(cx, "rebuild-age"),
        env_vars: r.str_map(cx, "env-vars").unwrap_or_default(),
        username: r.string(cx, "username"),
        python_path: r.string(cx, "python-path"),
        shell_type: r.string(cx, "shell-type"),
        build_timeout: r.seconds(cx, "build-timeout"),
        metadata: r.json_map(cx, "metadata"),
    };
    r.finish(cx);
    name.map(|_| raw)
}

/// Applies inheritance; returns the concrete images in file order. Cycles are reported
/// (unknown parents were already recorded as references for `validate`).
pub(crate) fn resolve(cx: &mut Ctx, raws: &[RawDiskImage]) -> Vec<DiskImage> {
    let by_name: HashMap<&str, &RawDiskImage> = raws.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut out = Vec::new();
    for raw in raws {
        // Chain from the image up to its root ancestor.
        let mut chain = vec![raw];
        let mut cycle = false;
        while let Some(parent) = chain.last().and_then(|r| r.parent.as_deref()) {
            let Some(p) = by_name.get(parent) else { break };
            if chain.iter().any(|c| c.name == p.name) {
                cycle = true;
                break;
            }
            chain.push(p);
        }
        if cycle {
            let names: Vec<&str> = chain.iter().map(|c| c.name.as_str()).collect();
            cx.error(
                raw.parent_pos,
                format!(
                    "{}.parent: inheritance cycle: {} -> {}",
                    raw.path,
                    names.join(" -> "),
                    chain.last().and_then(|c| c.parent.as_deref()).unwrap_or("")
                ),
            );
            continue;
        }
        if raw.is_abstract {
            continue;
        }
        let mut merged = RawDiskImage::default();
        for layer in chain.iter().rev() {
            merge(&mut merged, layer);
        }
        out.push(finish(raw, merged));
    }
    out
}

fn merge(into: &mut RawDiskImage, child: &RawDiskImage) {
    fn set<T: Clone>(into: &mut Option<T>, child: &Option<T>) {
        if child.is_some() {
            into.clone_from(child);
        }
    }
    set(&mut into.dib_cmd, &child.dib_cmd);
    set(&mut into.pause, &child.pause);
    into.elements.extend(child.elements.iter().cloned());
    set(&mut into.formats, &child.formats);
    set(&mut into.keep_formats, &child.keep_formats);
    set(&mut into.delete_after_upload, &child.delete_after_upload);
    set(&mut into.release, &child.release);
    set(&mut into.rebuild_age, &child.rebuild_age);
    into.env_vars
        .extend(child.env_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    set(&mut into.username, &child.username);
    set(&mut into.python_path, &child.python_path);
    set(&mut into.shell_type, &child.shell_type);
    set(&mut into.build_timeout, &child.build_timeout);
    set(&mut into.metadata, &child.metadata);
}

fn finish(raw: &RawDiskImage, m: RawDiskImage) -> DiskImage {
    DiskImage {
        name: raw.name.clone(),
        parent: raw.parent.clone(),
        dib_cmd: m.dib_cmd.unwrap_or_else(|| "disk-image-create".into()),
        pause: m.pause.unwrap_or(false),
        elements: m.elements,
        formats: m.formats.unwrap_or_default(),
        keep_formats: m.keep_formats.unwrap_or_default(),
        delete_after_upload: m.delete_after_upload.unwrap_or(false),
        release: m.release,
        rebuild_age: m.rebuild_age.unwrap_or(Duration::from_secs(86400)),
        env_vars: m.env_vars,
        username: m.username.unwrap_or_else(|| "zuul".into()),
        python_path: m.python_path.unwrap_or_else(|| "auto".into()),
        shell_type: m.shell_type,
        build_timeout: m.build_timeout.unwrap_or(Duration::from_secs(28800)),
        metadata: m.metadata.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::yaml::{parse, Val};
    use super::*;

    fn load(text: &str) -> (Vec<DiskImage>, Vec<String>) {
        let doc = parse(text).unwrap();
        let mut cx = Ctx::new("f");
        let Val::Seq(items) = &doc.val else { panic!() };
        let raws: Vec<_> = items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| parse_raw(&mut cx, &format!("diskimages[{i}]"), n))
            .collect();
        let images = resolve(&mut cx, &raws);
        (
            images,
            cx.problems.iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn chains_append_elements_merge_env_and_override_the_rest() {
        let (images, problems) = load(
            "- {name: base, abstract: true, elements: [a], env-vars: {X: '1', Y: '1'}, release: 9, pause: true}\n\
             - {name: mid, parent: base, abstract: yes, elements: [b], env-vars: {Y: '2'}}\n\
             - {name: leaf, parent: mid, elements: [c], release: bookworm, pause: false}\n\
             - {name: plain}\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(images.len(), 2);
        let leaf = &images[0];
        assert_eq!(leaf.elements, ["a", "b", "c"]);
        assert_eq!(leaf.env_vars["X"], "1");
        assert_eq!(leaf.env_vars["Y"], "2");
        assert_eq!(leaf.release.as_deref(), Some("bookworm"));
        assert!(!leaf.pause);
        assert_eq!(leaf.parent.as_deref(), Some("mid"));
        assert_eq!(images[1].username, "zuul");
        assert_eq!(images[1].rebuild_age, Duration::from_secs(86400));
    }

    #[test]
    fn cycles_are_reported_without_looping() {
        let (images, problems) =
            load("- {name: a, parent: b}\n- {name: b, parent: a}\n- {name: c, parent: c}\n");
        assert!(images.is_empty());
        assert_eq!(
            problems,
            vec![
                "f:1:21: diskimages[0].parent: inheritance cycle: a -> b -> a",
                "f:2:21: diskimages[1].parent: inheritance cycle: b -> a -> b",
                "f:3:21: diskimages[2].parent: inheritance cycle: c -> c",
            ]
        );
    }
}
