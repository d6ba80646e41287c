//! The secure file (`-s`): may carry `zookeeper-servers` (replacing the main file's),
//! `zookeeper-tls`, and `diskimages: [{name, env-vars}]` whose variables are merged into
//! the (already resolved) image of that name. Nothing else is allowed in it.

use std::collections::BTreeMap;

use super::reader::{Ctx, MapReader};
use super::yaml::{Node, Val};
use super::zookeeper::{parse_servers, parse_tls};
use super::Config;

/// Reads the secure document and applies it to `config`.
pub(crate) fn apply(cx: &mut Ctx, node: &Node, config: &mut Config) {
    if node.val == Val::Null {
        return;
    }
    let Some(mut r) = MapReader::new(cx, node, "") else {
        return;
    };
    if let Some(servers) = parse_servers(cx, &mut r) {
        if !servers.is_empty() {
            config.zookeeper_servers = servers;
        }
    }
    if let Some(tls) = parse_tls(cx, &mut r) {
        config.zookeeper_tls = Some(tls);
    }
    for (path, item) in r.list(cx, "diskimages") {
        let Some(mut d) = MapReader::new(cx, item, &path) else {
            continue;
        };
        let name = d.req_string(cx, "name");
        let name_pos = d.value_pos("name");
        let env: BTreeMap<String, String> = d.str_map(cx, "env-vars").unwrap_or_default();
        d.finish(cx);
        let Some(name) = name else { continue };
        match config.diskimages.iter_mut().find(|i| i.name == name) {
            Some(image) => image.env_vars.extend(env),
            None => cx.error(
                name_pos,
                format!(
                    "{path}.name: cannot add secure env-vars to diskimage `{name}`, \
                     which is not a (non-abstract) diskimage of the main config"
                ),
            ),
        }
    }
    r.finish(cx);
}
