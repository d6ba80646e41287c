//! The smaller listings: `label-list` (web only: the labels some registered pool serves)
//! and `nodepool info PROVIDER` (the provider's image uploads and nodes in ZooKeeper).

use std::collections::{BTreeMap, BTreeSet};

use super::table::{Cell, Column, Table};
use crate::model::{Component, ImageUpload, Node};

/// Columns of `label-list`.
pub const LABEL_COLUMNS: [Column; 1] = [Column::new("label", "Label")];

/// Columns of the first `info` table.
pub const INFO_BUILD_COLUMNS: [Column; 3] = [
    Column::new("image", "Image Name"),
    Column::new("build_id", "Build ID"),
    Column::new("upload_ids", "Upload IDs"),
];

/// Columns of the second `info` table.
pub const INFO_NODE_COLUMNS: [Column; 2] = [
    Column::new("id", "ID"),
    Column::new("server_id", "Server ID"),
];

/// Builds `label-list`: the union of `supported_labels` of every pool component, sorted
/// (Python's order is that of a set, i.e. arbitrary).
pub fn label_list<'a, I>(components: I) -> Table
where
    I: IntoIterator<Item = &'a Component>,
{
    let labels: BTreeSet<&str> = components
        .into_iter()
        .filter_map(|c| c.pool.as_ref())
        .flat_map(|p| p.supported_labels.iter().map(String::as_str))
        .collect();
    let mut table = Table::with_capacity(LABEL_COLUMNS.to_vec(), labels.len());
    for l in labels {
        table.push_row(vec![Cell::from(l)]);
    }
    table
}

/// The first `info` table: for each (image, build) with uploads to `provider`, the
/// upload ids joined by `,` (sorted).
pub fn info_builds<'a, I>(provider: &str, uploads: I) -> Table
where
    I: IntoIterator<Item = &'a ImageUpload>,
{
    let mut groups: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for u in uploads.into_iter().filter(|u| u.provider == provider) {
        groups
            .entry((u.image.as_str(), u.build_id.as_str()))
            .or_default()
            .push(u.id.as_str());
    }
    let mut table = Table::with_capacity(INFO_BUILD_COLUMNS.to_vec(), groups.len());
    for ((image, build), mut ids) in groups {
        ids.sort_unstable();
        table.push_row(vec![
            Cell::from(image),
            Cell::from(build),
            Cell::List(ids.into_iter().map(str::to_string).collect()),
        ]);
    }
    table
}

/// The second `info` table: id and server id of every node of `provider`, by id.
pub fn info_nodes<'a, I>(provider: &str, nodes: I) -> Table
where
    I: IntoIterator<Item = &'a Node>,
{
    let mut ns: Vec<&Node> = nodes
        .into_iter()
        .filter(|n| n.provider.as_deref() == Some(provider))
        .collect();
    ns.sort_by(|a, b| a.id.cmp(&b.id));
    let mut table = Table::with_capacity(INFO_NODE_COLUMNS.to_vec(), ns.len());
    for n in ns {
        table.push_row(vec![
            Cell::Str(n.id.to_string()),
            Cell::opt(n.external_id.as_deref()),
        ]);
    }
    table
}

/// The whole `nodepool info PROVIDER` output (ends with a newline): a title line, then
/// the two tables each under a caption.
pub fn info_text(provider: &str, builds: &Table, nodes: &Table) -> String {
    let b = builds.render_text();
    let n = nodes.render_text();
    let mut out = String::with_capacity(b.len() + n.len() + provider.len() + 64);
    out.push_str("ZooKeeper data for provider ");
    out.push_str(provider);
    out.push_str("\n\nImage data:\n");
    out.push_str(&b);
    out.push_str("\n\nNodes:\n");
    out.push_str(&n);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BuildId, ComponentKind, NodeId, PoolInfo, UploadId};
    use serde_json::{json, Value};

    #[test]
    fn labels_union() {
        let mut a = Component::new(ComponentKind::Pool, "h1", "11.0.0");
        a.pool = Some(PoolInfo {
            supported_labels: vec!["b".into(), "a".into()],
            ..PoolInfo::default()
        });
        let mut b = Component::new(ComponentKind::Pool, "h2", "11.0.0");
        b.pool = Some(PoolInfo {
            supported_labels: vec!["c".into(), "a".into()],
            ..PoolInfo::default()
        });
        let l = Component::new(ComponentKind::Launcher, "h3", "11.0.0");
        let t = label_list([&a, &b, &l]);
        assert_eq!(
            t.render_text(),
            "+-------+\n| Label |\n+-------+\n| a     |\n| b     |\n| c     |\n+-------+"
        );
        let v: Value = serde_json::from_str(&t.render_json()).unwrap();
        assert_eq!(v, json!([{"label": "a"}, {"label": "b"}, {"label": "c"}]));
    }

    #[test]
    fn info_tables() {
        let up = |img: &str, prov: &str, id: u64| {
            let mut u = ImageUpload::new(img, BuildId::from("b1"), prov);
            u.id = UploadId::from_sequence(id);
            u
        };
        let ups = vec![
            up("debian", "p1", 2),
            up("debian", "p1", 1),
            up("debian", "p2", 3),
        ];
        let n1 = Node {
            id: NodeId::from("0000000001"),
            provider: Some("p1".into()),
            external_id: Some("srv-1".into()),
            ..Node::default()
        };
        let n2 = Node {
            id: NodeId::from("0000000002"),
            provider: Some("p2".into()),
            ..Node::default()
        };
        let builds = info_builds("p1", &ups);
        let nodes = info_nodes("p1", [&n2, &n1]);
        assert_eq!(
            info_text("p1", &builds, &nodes),
            "ZooKeeper data for provider p1\n\
             \n\
             Image data:\n\
             +------------+----------+-----------------------+\n\
             | Image Name | Build ID | Upload IDs            |\n\
             +------------+----------+-----------------------+\n\
             | debian     | b1       | 0000000001,0000000002 |\n\
             +------------+----------+-----------------------+\n\
             \n\
             Nodes:\n\
             +------------+-----------+\n\
             | ID         | Server ID |\n\
             +------------+-----------+\n\
             | 0000000001 | srv-1     |\n\
             +------------+-----------+\n"
        );
    }
}
