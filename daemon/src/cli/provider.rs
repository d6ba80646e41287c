//! `info PROVIDER` and `erase PROVIDER`: what ZooKeeper holds for one provider, and
//! removing it (after the provider was removed from service). `erase` only touches
//! ZooKeeper, never the cloud; it asks before deleting unless told not to.

use color_eyre::eyre::Result;
use futures::stream::{self, StreamExt};
use nodepool_shared::listing::{info_builds, info_nodes, info_text, OutputFormat};
use nodepool_shared::model::{paths, BuildId, Node};
use nodepool_shared::zk::ZkStore;

use super::context::{ask_yes, print_out, Session};
use super::read::image_tree;

/// `nodepool info PROVIDER`. JSON: `{"image_data": [...], "nodes": [...]}` with the two
/// tables as the web API would render them.
pub async fn info(s: &Session, provider: &str, format: OutputFormat) -> Result<()> {
    let tree = image_tree(&s.store).await?;
    let nodes = s.store.nodes().await?;
    let builds = info_builds(provider, tree.uploads.iter());
    let nodes = info_nodes(provider, nodes.iter().map(|(n, _)| n));
    match format {
        OutputFormat::Text => {
            // info_text ends with a newline; print_out adds none of its own then.
            let text = info_text(provider, &builds, &nodes);
            print_out(text.strip_suffix('\n').unwrap_or(&text))
        }
        OutputFormat::Json => print_out(&format!(
            "{{\"image_data\": {}, \"nodes\": {}}}",
            builds.render_json(),
            nodes.render_json()
        )),
    }
}

/// What `erase` removes: the `…/providers/<provider>` subtree of each build, and nodes.
struct ProviderData {
    builds: Vec<(String, BuildId)>,
    nodes: Vec<Node>,
}

async fn provider_data(store: &ZkStore, provider: &str) -> Result<ProviderData> {
    let tree = image_tree(store).await?;
    let mut builds = Vec::new();
    for b in &tree.builds {
        if store
            .build_providers(&b.image, &b.id)
            .await?
            .iter()
            .any(|p| p == provider)
        {
            builds.push((b.image.clone(), b.id.clone()));
        }
    }
    let nodes = store
        .nodes()
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.provider.as_deref() == Some(provider))
        .collect();
    Ok(ProviderData { builds, nodes })
}

/// How `erase` gets its go-ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    /// `--force` / `--yes`.
    Given,
    /// Ask on the terminal.
    Ask,
}

/// `nodepool erase PROVIDER [--force|--yes]`.
pub async fn erase(s: &Session, provider: &str, confirm: Confirm) -> Result<()> {
    let data = provider_data(&s.store, provider).await?;
    if confirm == Confirm::Ask && !ask(provider, &data)? {
        print_out("Aborting. No data erased.")?;
        return Ok(());
    }
    print_out(&format!("Erasing build data for {provider}..."))?;
    let client = s.store.client();
    for (image, build) in &data.builds {
        let path = format!("{}/{}", paths::build_providers(image, build), provider);
        client.delete_recursive(&path).await?;
    }
    print_out(&format!("Erasing node data for {provider}..."))?;
    let deletes = data.nodes.iter().map(|n| s.store.delete_node(n));
    let results: Vec<_> = stream::iter(deletes).buffered(64).collect().await;
    for r in results {
        r?;
    }
    Ok(())
}

/// Asks `[N/y]` on the terminal; refuses when stdin is not one.
fn ask(provider: &str, data: &ProviderData) -> Result<bool> {
    ask_yes(
        &format!(
            "\nWARNING! This action is not reversible!\n\
             ({} build(s) with uploads and {} node(s) of {provider} in ZooKeeper)\n\
             Erase ZooKeeper data for provider {provider}?",
            data.builds.len(),
            data.nodes.len()
        ),
        &format!(
            "refusing to erase provider {provider} without confirmation: stdin is not a terminal (use --force or --yes)"
        ),
    )
}
