//! Cross checks that need the whole file: duplicate names and references to labels,
//! diskimages, providers' diskimages and cloud images that do not exist.
//!
//! While reading, every definition and reference is recorded as a [`Mark`] with its
//! position; [`check`] then reports every problem at once.

use std::collections::HashMap;

use super::reader::Ctx;
use super::yaml::Pos;

/// What a name names. Scoped kinds use the provider's index as scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Label,
    DiskImage,
    /// A diskimage that must not be abstract (references from providers).
    ConcreteDiskImage,
    Provider,
    Pool,
    ProviderDiskImage,
    CloudImage,
    /// A static host (name, username and port), unique within its provider.
    StaticNode,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Label => "label",
            Kind::DiskImage | Kind::ConcreteDiskImage => "diskimage",
            Kind::Provider => "provider",
            Kind::Pool => "pool",
            Kind::ProviderDiskImage => "provider diskimage",
            Kind::CloudImage => "cloud-image",
            Kind::StaticNode => "static node",
        }
    }

    /// Where a missing name should have been defined.
    fn home(self) -> &'static str {
        match self {
            Kind::Label => "in the top-level `labels`",
            Kind::DiskImage | Kind::ConcreteDiskImage => "in the top-level `diskimages`",
            Kind::Provider => "in `providers`",
            Kind::Pool => "in this provider's `pools`",
            Kind::ProviderDiskImage => "in this provider's `diskimages`",
            Kind::CloudImage => "in this provider's `cloud-images`",
            Kind::StaticNode => "in this provider's pools",
        }
    }
}

/// One definition or reference of a name.
#[derive(Clone, Debug)]
pub(crate) struct Mark {
    pub kind: Kind,
    pub scope: String,
    pub name: String,
    pub pos: Pos,
    pub path: String,
}

impl Mark {
    pub fn new(kind: Kind, scope: &str, name: &str, pos: Pos, path: &str) -> Self {
        Mark {
            kind,
            scope: scope.into(),
            name: name.into(),
            pos,
            path: path.into(),
        }
    }
}

/// All definitions and references of one file.
#[derive(Clone, Debug, Default)]
pub(crate) struct Marks {
    pub defs: Vec<Mark>,
    pub refs: Vec<Mark>,
    /// Names of abstract diskimages.
    pub abstract_images: Vec<String>,
}

/// Reports duplicate definitions and dangling references into `cx`.
pub(crate) fn check(cx: &mut Ctx) {
    let marks = std::mem::take(&mut cx.marks);
    let mut first: HashMap<(Kind, &str, &str), &Mark> = HashMap::new();
    for d in &marks.defs {
        match first.get(&(d.kind, d.scope.as_str(), d.name.as_str())) {
            Some(prev) => cx.error(
                d.pos,
                format!(
                    "{}: duplicate {} `{}` (first defined at line {})",
                    d.path,
                    d.kind.noun(),
                    d.name,
                    prev.pos.line
                ),
            ),
            None => {
                first.insert((d.kind, &d.scope, &d.name), d);
            }
        }
    }
    for r in &marks.refs {
        let def_kind = match r.kind {
            Kind::ConcreteDiskImage => Kind::DiskImage,
            k => k,
        };
        if !first.contains_key(&(def_kind, r.scope.as_str(), r.name.as_str())) {
            cx.error(
                r.pos,
                format!(
                    "{}: {} `{}` is not defined {}",
                    r.path,
                    r.kind.noun(),
                    r.name,
                    r.kind.home()
                ),
            );
        } else if r.kind == Kind::ConcreteDiskImage && marks.abstract_images.contains(&r.name) {
            cx.error(
                r.pos,
                format!(
                    "{}: diskimage `{}` is abstract and cannot be used by a provider",
                    r.path, r.name
                ),
            );
        }
    }
    cx.marks = marks;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u64) -> Pos {
        Pos { line, column: 3 }
    }

    #[test]
    fn duplicates_and_dangling_references_are_all_reported() {
        let mut cx = Ctx::new("f");
        cx.define(Kind::Label, "", "a", at(1), "labels[0].name");
        cx.define(Kind::Label, "", "a", at(2), "labels[1].name");
        cx.define(Kind::Pool, "0", "main", at(3), "providers[0].pools[0].name");
        cx.define(Kind::Pool, "1", "main", at(4), "providers[1].pools[0].name");
        cx.define(Kind::DiskImage, "", "base", at(5), "diskimages[0].name");
        cx.marks.abstract_images.push("base".into());
        cx.refer(Kind::Label, "", "b", at(6), "x.name");
        cx.refer(Kind::ConcreteDiskImage, "", "base", at(7), "y.name");
        cx.refer(Kind::DiskImage, "", "base", at(8), "z.parent");
        check(&mut cx);
        let got: Vec<String> = cx.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            vec![
                "f:2:3: labels[1].name: duplicate label `a` (first defined at line 1)",
                "f:6:3: x.name: label `b` is not defined in the top-level `labels`",
                "f:7:3: y.name: diskimage `base` is abstract and cannot be used by a provider",
            ]
        );
    }
}
