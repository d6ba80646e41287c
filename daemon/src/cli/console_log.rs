//! `nodepool console-log ID`: the console log of a node's server, fetched from its cloud
//! (Nova's `os-getConsoleOutput` server action) through the node's provider in the
//! config and its clouds.yaml cloud. Printed as the cloud returns it.

use color_eyre::eyre::{eyre, Result, WrapErr};
use nodepool_shared::cloud::{provider_driver, CloudDriver, CloudsFile};
use nodepool_shared::model::NodeId;
use nodepool_shared::stats::Statsd;

use super::context::{print_out, Session};

/// `nodepool console-log ID [--lines N]`.
pub async fn console_log(s: &Session, id: &str, lines: Option<u32>) -> Result<()> {
    let node_id = NodeId::from(id);
    let (node, _) = s
        .store
        .get_node(&node_id)
        .await?
        .ok_or_else(|| eyre!("Node id {id} not found"))?;
    let server = node
        .external_id
        .clone()
        .ok_or_else(|| eyre!("node {id} has no server yet (no external id)"))?;
    let provider_name = node
        .provider
        .clone()
        .ok_or_else(|| eyre!("node {id} has no provider"))?;
    let p = s.config.provider(&provider_name).ok_or_else(|| {
        eyre!("Provider {provider_name} of node {id} is not defined in the config")
    })?;
    let driver = CloudsFile::load()
        .map_err(Into::into)
        .and_then(|clouds| provider_driver(p, &clouds, &Statsd::noop()))
        .wrap_err_with(|| format!("provider {provider_name}: cloud {}", p.cloud))?;
    let text = driver
        .console_output(&server, lines)
        .await
        .wrap_err_with(|| format!("cannot fetch the console log of server {server} (node {id})"))?;
    print_out(text.strip_suffix('\n').unwrap_or(&text))
}
