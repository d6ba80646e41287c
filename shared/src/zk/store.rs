//! [`ZkStore`]: typed reads and writes of every Nodepool record, for the
//! launcher, the builder and the CLI, so that nobody builds paths or parses JSON by hand.
//!
//! * Reads return the record plus its [`Stat`] (the `version` is what a guarded
//!   `store_*` call takes). A missing znode is `Ok(None)`; an empty node znode (a lock
//!   attempt on a deleted node re-creates it: kazoo's recipe makes the lock dir's parents)
//!   also reads as `None`.
//! * Corrupt JSON: `get_*` returns [`ZkError::Corrupt`] naming the path; the list
//!   functions skip the record with a warning naming the path, once per record and
//!   version (a daemon that lists every few seconds must not repeat it on every pass;
//!   later passes log it at debug level). Nothing here panics.
//! * List functions read all records pipelined (many requests in flight at once).
//! * Locks are not taken here (see the lock module); [`ZkStore::node_lock_contenders`]
//!   only reports who holds or waits for a lock ("probably locked": a node with contenders
//!   is skipped).
//! * Components register through [`ComponentRegistration`] (see [`ZkStore::register_component`]).

use std::sync::{Arc, Mutex};

use futures::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client::{join, ConnectionState, Op, Stat, ZkClient};
use super::error::{ZkError, ZkResult};
use crate::model::ids::split_sequence;
use crate::model::{
    paths, BuildId, Component, ComponentKind, ImageBuild, ImageUpload, ModelError, Node, NodeId,
    NodeRequest, NodeState, RequestId, UploadId,
};
use crate::sync::MutexExt;

/// How many reads a list function keeps in flight.
const PIPELINE: usize = 64;

/// True for a kazoo lock contender name: `<anything>__lock__<seq10>` (kazoo's regex
/// `__lock__(-?\d{10})$`). Other children of a lock dir are ignored.
pub fn is_lock_contender(name: &str) -> bool {
    split_sequence(name).is_some_and(|(prefix, _)| prefix.ends_with("__lock__"))
}

/// Sorts lock contender names by their sequence (the holder first), like kazoo.
pub fn sort_contenders(names: &mut [String]) {
    names.sort_by(|a, b| {
        let seq = |s: &String| split_sequence(s).map(|(_, q)| q.to_string());
        seq(a).cmp(&seq(b)).then_with(|| a.cmp(b))
    });
}

/// Creation and modification time of a flag znode (`pause`, `request-build`), in float
/// epoch seconds like Nodepool's own timestamps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlagTimes {
    /// When the znode was created (`ctime`).
    pub created: f64,
    /// When the znode was last written (`mtime`).
    pub modified: f64,
}

impl FlagTimes {
    /// From a znode stat (milliseconds → seconds).
    pub fn from_stat(stat: &Stat) -> Self {
        FlagTimes {
            created: stat.ctime as f64 / 1000.0,
            modified: stat.mtime as f64 / 1000.0,
        }
    }

    /// Seconds since creation at `now` (float epoch seconds); never negative.
    pub fn age(&self, now: f64) -> f64 {
        (now - self.created).max(0.0)
    }
}

/// A component record together with its znode name (`<hostname><seq10>`) and stat.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredComponent {
    /// The znode name below `/nodepool/components/<kind>/`.
    pub name: String,
    /// The record.
    pub component: Component,
    /// The znode stat.
    pub stat: Stat,
}

fn corrupt(path: &str, err: ModelError) -> ZkError {
    ZkError::Corrupt(format!("corrupt record at {path}: {err}"))
}

/// At most this many corrupt records are remembered as already reported; beyond that
/// the memory starts afresh (and each is reported once more).
const REPORTED_CORRUPT_MAX: usize = 10_000;

/// A cloneable handle for typed record access (wraps a [`ZkClient`]).
#[derive(Clone, Debug)]
pub struct ZkStore {
    client: ZkClient,
    /// Corrupt records the list functions have warned about, with the `mzxid` of the
    /// version they warned about (shared by clones).
    reported_corrupt: Arc<Mutex<std::collections::HashMap<String, i64>>>,
}

impl ZkStore {
    /// A store on `client`.
    pub fn new(client: ZkClient) -> Self {
        ZkStore {
            client,
            reported_corrupt: Arc::default(),
        }
    }

    /// Logs a corrupt record skipped by a list function: a warning the first time this
    /// version of it is seen, debug afterwards.
    fn skip_corrupt(&self, path: &str, stat: &Stat, err: &ModelError) {
        let first = {
            let mut seen = self.reported_corrupt.lock_or_recover();
            if seen.len() >= REPORTED_CORRUPT_MAX && !seen.contains_key(path) {
                seen.clear();
            }
            seen.insert(path.to_string(), stat.mzxid) != Some(stat.mzxid)
        };
        if first {
            warn!(path = %path, "skipping corrupt record: {err}");
        } else {
            debug!(path = %path, "skipping corrupt record (reported before): {err}");
        }
    }

    /// Forgets the reported corrupt records among `paths` (they read fine or are gone).
    fn forget_corrupt<'a>(&self, paths: impl Iterator<Item = &'a str>) {
        let mut seen = self.reported_corrupt.lock_or_recover();
        if seen.is_empty() {
            return;
        }
        for p in paths {
            seen.remove(p);
        }
    }

    /// The underlying client.
    pub fn client(&self) -> &ZkClient {
        &self.client
    }

    /// Children of `path`, sorted; empty if `path` does not exist.
    async fn children(&self, path: &str) -> ZkResult<Vec<String>> {
        let mut c = self.client.get_children(path).await?.unwrap_or_default();
        c.sort();
        Ok(c)
    }

    /// Reads and parses one record; `Ok(None)` if missing or empty.
    async fn read<T>(
        &self,
        path: &str,
        parse: impl FnOnce(&[u8]) -> Result<Option<T>, ModelError>,
    ) -> ZkResult<Option<(T, Stat)>> {
        let Some((data, stat)) = self.client.get(path).await? else {
            return Ok(None);
        };
        match parse(&data) {
            Ok(Some(v)) => Ok(Some((v, stat))),
            Ok(None) => Ok(None),
            Err(e) => Err(corrupt(path, e)),
        }
    }

    /// Reads many records pipelined, in the order of `keys`; missing, empty and corrupt
    /// ones are skipped (corrupt ones with a warning).
    async fn read_many<K, T, P, F>(
        &self,
        keys: Vec<K>,
        path_of: P,
        parse: F,
    ) -> ZkResult<Vec<(T, Stat)>>
    where
        K: Send,
        P: Fn(&K) -> String,
        F: Fn(&K, &[u8]) -> Result<Option<T>, ModelError>,
    {
        let client = &self.client;
        let reads = keys.into_iter().map(|k| {
            let path = path_of(&k);
            async move {
                let r = client.get(&path).await;
                (k, path, r)
            }
        });
        let results: Vec<_> = stream::iter(reads).buffered(PIPELINE).collect().await;
        let mut out = Vec::with_capacity(results.len());
        let mut readable = Vec::new();
        for (k, path, r) in results {
            let Some((data, stat)) = r? else { continue };
            match parse(&k, &data) {
                Ok(Some(v)) => out.push((v, stat)),
                Ok(None) => {}
                Err(e) => {
                    self.skip_corrupt(&path, &stat, &e);
                    continue;
                }
            }
            readable.push(path);
        }
        self.forget_corrupt(readable.iter().map(String::as_str));
        Ok(out)
    }

    // ---------------------------------------------------------------- nodes

    /// Ids of all node znodes (sorted; includes empty ones).
    pub async fn node_ids(&self) -> ZkResult<Vec<NodeId>> {
        Ok(self
            .children(paths::NODES)
            .await?
            .into_iter()
            .map(NodeId::from)
            .collect())
    }

    /// All nodes (sorted by id); empty and corrupt znodes are skipped.
    pub async fn nodes(&self) -> ZkResult<Vec<(Node, Stat)>> {
        let ids = self.node_ids().await?;
        self.read_many(ids, paths::node, Node::from_json).await
    }

    /// Ids of node znodes without data (the CleanupWorker deletes them recursively).
    pub async fn empty_node_ids(&self) -> ZkResult<Vec<NodeId>> {
        let ids = self.node_ids().await?;
        let client = &self.client;
        let reads = ids.into_iter().map(|id| async move {
            let r = client.get(&paths::node(&id)).await;
            (id, r)
        });
        let results: Vec<_> = stream::iter(reads).buffered(PIPELINE).collect().await;
        let mut out = Vec::new();
        for (id, r) in results {
            if let Some((data, _)) = r? {
                if data.is_empty() {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// One node; `None` if missing or empty.
    pub async fn get_node(&self, id: &NodeId) -> ZkResult<Option<(Node, Stat)>> {
        self.read(&paths::node(id), |d| Node::from_json(id, d))
            .await
    }

    /// Creates a node znode (persistent sequential `/nodepool/nodes/<seq10>`), sets
    /// `node.id` and returns the id.
    pub async fn create_node(&self, node: &mut Node) -> ZkResult<NodeId> {
        let path = self
            .client
            .create_sequential(&paths::node_create_prefix(), &node.to_json(), false)
            .await?;
        let id = NodeId::from(path.rsplit('/').next().unwrap_or_default());
        node.id = id.clone();
        Ok(id)
    }

    /// Writes an existing node (guarded by `version` if given); returns the new stat.
    pub async fn store_node(&self, node: &Node, version: Option<i32>) -> ZkResult<Stat> {
        self.client
            .set(&paths::node(&node.id), &node.to_json(), version)
            .await
    }

    /// Deletes a node the way Nodepool does: write state `deleted`, then delete the znode
    /// and everything below it (lock dir and contenders). A missing node is not an error.
    pub async fn delete_node(&self, node: &Node) -> ZkResult<()> {
        let mut gone = node.clone();
        gone.set_state(NodeState::Deleted);
        match self.store_node(&gone, None).await {
            Ok(_) | Err(ZkError::NoNode(_)) => {}
            Err(e) => return Err(e),
        }
        self.delete_node_znode(&node.id).await
    }

    /// Deletes `/nodepool/nodes/<id>` recursively without writing it first (for empty or
    /// corrupt znodes). A missing node is not an error.
    pub async fn delete_node_znode(&self, id: &NodeId) -> ZkResult<()> {
        self.client.delete_recursive(&paths::node(id)).await
    }

    /// Lock contenders of a node (`/nodepool/nodes/<id>/lock/*__lock__<seq>`), holder
    /// first; empty if none (or no lock dir). Non-empty = "probably locked" (skipped
    /// without trying to lock it).
    pub async fn node_lock_contenders(&self, id: &NodeId) -> ZkResult<Vec<String>> {
        self.lock_contenders(&paths::node_lock(id)).await
    }

    /// Lock contenders below any lock directory, holder first.
    pub async fn lock_contenders(&self, lock_dir: &str) -> ZkResult<Vec<String>> {
        let mut c: Vec<String> = self
            .children(lock_dir)
            .await?
            .into_iter()
            .filter(|n| is_lock_contender(n))
            .collect();
        sort_contenders(&mut c);
        Ok(c)
    }

    // ---------------------------------------------------------------- requests

    /// Ids of all requests (sorted).
    pub async fn request_ids(&self) -> ZkResult<Vec<RequestId>> {
        Ok(self
            .children(paths::REQUESTS)
            .await?
            .into_iter()
            .map(RequestId::from)
            .collect())
    }

    /// All requests (sorted by id); empty and corrupt znodes are skipped.
    pub async fn requests(&self) -> ZkResult<Vec<(NodeRequest, Stat)>> {
        let ids = self.request_ids().await?;
        self.read_many(ids, paths::request, NodeRequest::from_json)
            .await
    }

    /// One request; `None` if missing or empty.
    pub async fn get_request(&self, id: &RequestId) -> ZkResult<Option<(NodeRequest, Stat)>> {
        self.read(&paths::request(id), |d| NodeRequest::from_json(id, d))
            .await
    }

    /// Creates a request `/nodepool/requests/<precedence>-<seq10>` (ephemeral for
    /// Nodepool's own min-ready requests, persistent as Zuul does); sets `request.id`
    /// and returns it. An unset `event_id` gets a new uuid4 hex like Python does.
    pub async fn create_request(
        &self,
        request: &mut NodeRequest,
        precedence: &str,
        ephemeral: bool,
    ) -> ZkResult<RequestId> {
        if request.event_id.is_none() {
            request.event_id = Some(uuid::Uuid::new_v4().simple().to_string());
        }
        let path = self
            .client
            .create_sequential(
                &paths::request_create_prefix(precedence),
                &request.to_json(),
                ephemeral,
            )
            .await?;
        let id = RequestId::from(path.rsplit('/').next().unwrap_or_default());
        request.id = id.clone();
        Ok(id)
    }

    /// Writes an existing request (guarded by `version` if given).
    pub async fn store_request(
        &self,
        request: &NodeRequest,
        version: Option<i32>,
    ) -> ZkResult<Stat> {
        self.client
            .set(&paths::request(&request.id), &request.to_json(), version)
            .await
    }

    /// Stores a request only while the lock contender `lock_node` (the full path of our
    /// own contender) exists: one transaction, a check of the contender and the write.
    /// An ephemeral contender goes with its session, so the write cannot land once the
    /// lock is lost. `NoNode` if the contender (or the request) is gone.
    pub async fn store_request_while_locked(
        &self,
        request: &NodeRequest,
        lock_node: &str,
    ) -> ZkResult<()> {
        self.client
            .multi(&[
                Op::Check {
                    path: lock_node.to_string(),
                    version: 0,
                },
                Op::Set {
                    path: paths::request(&request.id),
                    data: request.to_json(),
                    version: None,
                },
            ])
            .await
            .map(|_| ())
    }

    /// Deletes a request (recursively); a missing one is not an error.
    pub async fn delete_request(&self, id: &RequestId) -> ZkResult<()> {
        self.client.delete_recursive(&paths::request(id)).await
    }

    /// Lock contenders of a request (`/nodepool/requests-lock/<id>/…`), holder first.
    pub async fn request_lock_contenders(&self, id: &RequestId) -> ZkResult<Vec<String>> {
        self.lock_contenders(&paths::request_lock(id)).await
    }

    /// The request lock dirs with their stats (the CleanupWorker removes those whose
    /// request is gone and whose mtime is old).
    pub async fn request_lock_dirs(&self) -> ZkResult<Vec<(RequestId, Stat)>> {
        let ids = self.children(paths::REQUEST_LOCKS).await?;
        let client = &self.client;
        let reads = ids.into_iter().map(|id| async move {
            let path = join(paths::REQUEST_LOCKS, &id);
            (id, client.exists(&path).await)
        });
        let results: Vec<_> = stream::iter(reads).buffered(PIPELINE).collect().await;
        let mut out = Vec::new();
        for (id, r) in results {
            if let Some(stat) = r? {
                out.push((RequestId::from(id), stat));
            }
        }
        Ok(out)
    }

    /// Deletes a request lock dir recursively; missing is not an error.
    pub async fn delete_request_lock_dir(&self, id: &RequestId) -> ZkResult<()> {
        self.client.delete_recursive(&paths::request_lock(id)).await
    }

    // ---------------------------------------------------------------- images and builds

    /// Names of all images with a znode (sorted).
    pub async fn image_names(&self) -> ZkResult<Vec<String>> {
        self.children(paths::IMAGES).await
    }

    /// Build ids of an image (sorted; the `lock` child is excluded).
    pub async fn build_ids(&self, image: &str) -> ZkResult<Vec<BuildId>> {
        Ok(self
            .children(&paths::builds(image))
            .await?
            .into_iter()
            .filter(|c| c != paths::LOCK)
            .map(BuildId::from)
            .collect())
    }

    /// All builds of an image (sorted by id); corrupt ones skipped.
    pub async fn builds(&self, image: &str) -> ZkResult<Vec<(ImageBuild, Stat)>> {
        let ids = self.build_ids(image).await?;
        self.read_many(
            ids,
            |id| paths::build(image, id),
            |id, d| ImageBuild::from_json(image, id, d),
        )
        .await
    }

    /// One build; `None` if missing or empty.
    pub async fn get_build(
        &self,
        image: &str,
        id: &BuildId,
    ) -> ZkResult<Option<(ImageBuild, Stat)>> {
        self.read(&paths::build(image, id), |d| {
            ImageBuild::from_json(image, id, d)
        })
        .await
    }

    /// Creates a build znode with a new uuid4-hex id (persistent, parents made as needed);
    /// sets `build.id` and returns it.
    pub async fn create_build(&self, build: &mut ImageBuild) -> ZkResult<BuildId> {
        let id = BuildId::generate();
        build.id = id.clone();
        self.client
            .create_persistent(&paths::build(&build.image, &id), &build.to_json())
            .await?;
        Ok(id)
    }

    /// Writes an existing build (guarded by `version` if given).
    pub async fn store_build(&self, build: &ImageBuild, version: Option<i32>) -> ZkResult<Stat> {
        self.client
            .set(&build.path(), &build.to_json(), version)
            .await
    }

    /// Deletes a build and everything below it (providers, uploads, locks); missing is
    /// not an error.
    pub async fn delete_build(&self, image: &str, id: &BuildId) -> ZkResult<()> {
        self.client.delete_recursive(&paths::build(image, id)).await
    }

    /// Providers that have an uploads dir below a build (sorted).
    pub async fn build_providers(&self, image: &str, id: &BuildId) -> ZkResult<Vec<String>> {
        self.children(&paths::build_providers(image, id)).await
    }

    /// Upload ids of a build for a provider (sorted; `lock` excluded).
    pub async fn upload_ids(
        &self,
        image: &str,
        build_id: &BuildId,
        provider: &str,
    ) -> ZkResult<Vec<UploadId>> {
        Ok(self
            .children(&paths::provider_uploads(image, build_id, provider))
            .await?
            .into_iter()
            .filter(|c| c != paths::LOCK)
            .map(UploadId::from)
            .collect())
    }

    /// All uploads of a build for a provider (sorted by id); corrupt ones skipped.
    pub async fn uploads(
        &self,
        image: &str,
        build_id: &BuildId,
        provider: &str,
    ) -> ZkResult<Vec<(ImageUpload, Stat)>> {
        let ids = self.upload_ids(image, build_id, provider).await?;
        self.read_many(
            ids,
            |id| paths::upload(image, build_id, provider, id),
            |id, d| ImageUpload::from_json(image, build_id, provider, id, d),
        )
        .await
    }

    /// One upload; `None` if missing or empty.
    pub async fn get_upload(
        &self,
        image: &str,
        build_id: &BuildId,
        provider: &str,
        id: &UploadId,
    ) -> ZkResult<Option<(ImageUpload, Stat)>> {
        self.read(&paths::upload(image, build_id, provider, id), |d| {
            ImageUpload::from_json(image, build_id, provider, id, d)
        })
        .await
    }

    /// Creates an upload znode (persistent sequential below
    /// `…/providers/<provider>/images/`); sets `upload.id` and returns it.
    pub async fn create_upload(&self, upload: &mut ImageUpload) -> ZkResult<UploadId> {
        let prefix = format!(
            "{}/",
            paths::provider_uploads(&upload.image, &upload.build_id, &upload.provider)
        );
        let path = self
            .client
            .create_sequential(&prefix, &upload.to_json(), false)
            .await?;
        let id = UploadId::from(path.rsplit('/').next().unwrap_or_default());
        upload.id = id.clone();
        Ok(id)
    }

    /// Writes an existing upload (guarded by `version` if given).
    pub async fn store_upload(&self, upload: &ImageUpload, version: Option<i32>) -> ZkResult<Stat> {
        self.client
            .set(&upload.path(), &upload.to_json(), version)
            .await
    }

    /// Deletes an upload (recursively, with its lock dir); missing is not an error.
    pub async fn delete_upload(
        &self,
        image: &str,
        build_id: &BuildId,
        provider: &str,
        id: &UploadId,
    ) -> ZkResult<()> {
        self.client
            .delete_recursive(&paths::upload(image, build_id, provider, id))
            .await
    }

    // ---------------------------------------------------------------- image flags

    /// Whether the image is paused (`…/pause` exists).
    pub async fn image_paused(&self, image: &str) -> ZkResult<bool> {
        Ok(self
            .client
            .exists(&paths::image_pause(image))
            .await?
            .is_some())
    }

    /// Pauses the image (creates `…/pause`; already paused is fine).
    pub async fn pause_image(&self, image: &str) -> ZkResult<()> {
        self.client.ensure_path(&paths::image_pause(image)).await
    }

    /// Unpauses the image (deletes `…/pause`; not paused is fine).
    pub async fn unpause_image(&self, image: &str) -> ZkResult<()> {
        match self.client.delete(&paths::image_pause(image), None).await {
            Ok(()) | Err(ZkError::NoNode(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The manual build request of an image (`…/request-build`), with its times; `None`
    /// if no build is requested.
    pub async fn build_request(&self, image: &str) -> ZkResult<Option<FlagTimes>> {
        Ok(self
            .client
            .exists(&paths::image_request_build(image))
            .await?
            .map(|s| FlagTimes::from_stat(&s)))
    }

    /// Requests a build of the image (creates `…/request-build`; idempotent).
    pub async fn request_build(&self, image: &str) -> ZkResult<()> {
        self.client
            .ensure_path(&paths::image_request_build(image))
            .await
    }

    /// Clears the build request (deletes `…/request-build`; absent is fine).
    pub async fn clear_build_request(&self, image: &str) -> ZkResult<()> {
        match self
            .client
            .delete(&paths::image_request_build(image), None)
            .await
        {
            Ok(()) | Err(ZkError::NoNode(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---------------------------------------------------------------- components

    /// All components of a kind (sorted by znode name); corrupt ones skipped.
    pub async fn components(&self, kind: ComponentKind) -> ZkResult<Vec<StoredComponent>> {
        let names = self.children(&paths::components(kind)).await?;
        let list = self
            .read_many(
                names,
                |n| paths::component(kind, n),
                |n, d| Ok(Component::from_json(kind, n, d)?.map(|c| (n.clone(), c))),
            )
            .await?;
        Ok(list
            .into_iter()
            .map(|((name, component), stat)| StoredComponent {
                name,
                component,
                stat,
            })
            .collect())
    }

    /// One component by znode name; `None` if missing or empty.
    pub async fn get_component(
        &self,
        kind: ComponentKind,
        name: &str,
    ) -> ZkResult<Option<StoredComponent>> {
        Ok(self
            .read(&paths::component(kind, name), |d| {
                Component::from_json(kind, name, d)
            })
            .await?
            .map(|(component, stat)| StoredComponent {
                name: name.to_string(),
                component,
                stat,
            }))
    }

    /// Creates the ephemeral sequential znode `/nodepool/components/<kind>/<hostname><seq>`
    /// (sorted-keys JSON); returns the znode name and stat. Prefer
    /// [`Self::register_component`], which also re-registers after a new session.
    pub async fn create_component(&self, component: &Component) -> ZkResult<(String, Stat)> {
        let prefix = paths::component_create_prefix(component.kind, &component.hostname);
        let path = self
            .client
            .create_sequential(&prefix, &component.to_json(), true)
            .await?;
        let stat = self
            .client
            .exists(&path)
            .await?
            .ok_or_else(|| ZkError::NoNode(path.clone()))?;
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        Ok((name, stat))
    }

    /// Writes a component znode (guarded by `version` if given).
    pub async fn update_component(
        &self,
        name: &str,
        component: &Component,
        version: Option<i32>,
    ) -> ZkResult<Stat> {
        self.client
            .set(
                &paths::component(component.kind, name),
                &component.to_json(),
                version,
            )
            .await
    }

    /// Registers `component` again in the current session: removes what earlier
    /// attempts left, then creates it anew. Removed first: `previous` (the znode of
    /// the session `previous_owner`, which may linger until the server expires it) and
    /// every znode of this host's kind that the current session already owns (an
    /// attempt whose create went through but whose reply was lost, so its name was
    /// never learnt). Only znodes owned by those sessions go: after a move to another
    /// ensemble, `previous` may name another daemon's record there.
    pub async fn reregister_component(
        &self,
        component: &Component,
        previous: &str,
        previous_owner: i64,
    ) -> ZkResult<(String, Stat)> {
        let current = self.client.session_id().ok_or(ZkError::Closed)?;
        let dir = paths::components(component.kind);
        let mut stale = vec![(previous.to_string(), previous_owner)];
        for name in self.children(&dir).await? {
            let seq = name.strip_prefix(component.hostname.as_str());
            let ours = seq.is_some_and(|n| n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit()));
            if ours && name != previous {
                stale.push((name, current));
            }
        }
        for (name, owner) in stale {
            let path = paths::component(component.kind, &name);
            let Some(stat) = self.client.exists(&path).await? else {
                continue;
            };
            if stat.ephemeral_owner != owner {
                continue;
            }
            match self.client.delete(&path, Some(stat.version)).await {
                Ok(()) | Err(ZkError::NoNode(_)) => {}
                // Rewritten meanwhile: ours all the same (only its owner writes it).
                Err(ZkError::BadVersion(_)) => self.client.delete(&path, None).await?,
                Err(e) => return Err(e),
            }
        }
        self.create_component(component).await
    }

    /// Registers a component and keeps it registered: after a new session
    /// ([`super::SessionEvent::Reconnected`]) it is created again (new sequence number)
    /// with the latest content.
    pub async fn register_component(
        &self,
        component: Component,
    ) -> ZkResult<ComponentRegistration> {
        let generation = self.client.generation();
        let (name, stat) = self.create_component(&component).await?;
        info!(kind = %component.kind, name = %name, "registered component");
        let shared = Arc::new(Mutex::new(RegState {
            component,
            name,
            version: stat.version,
            owner: stat.ephemeral_owner,
            generation,
        }));
        let cancel = CancellationToken::new();
        tokio::spawn(reregister(self.clone(), shared.clone(), cancel.clone()));
        Ok(ComponentRegistration {
            store: self.clone(),
            state: shared,
            cancel,
        })
    }
}

struct RegState {
    component: Component,
    name: String,
    version: i32,
    /// The session that created `name` (its `ephemeralOwner`).
    owner: i64,
    generation: u64,
}

/// A registered component (see [`ZkStore::register_component`]). Dropping it stops the
/// re-registration; the ephemeral znode goes with the session. Use
/// [`Self::unregister`] to delete it now.
pub struct ComponentRegistration {
    store: ZkStore,
    state: Arc<Mutex<RegState>>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for ComponentRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentRegistration")
            .field("path", &self.path())
            .finish()
    }
}

impl Drop for ComponentRegistration {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl ComponentRegistration {
    /// The current znode name (`<hostname><seq10>`; changes after a re-registration).
    pub fn name(&self) -> String {
        self.state.lock_or_recover().name.clone()
    }

    /// The current znode path.
    pub fn path(&self) -> String {
        let st = self.state.lock_or_recover();
        paths::component(st.component.kind, &st.name)
    }

    /// The content as last written.
    pub fn component(&self) -> Component {
        self.state.lock_or_recover().component.clone()
    }

    /// Changes the content (`f` edits a copy) and writes it with a version check. While
    /// the session is being replaced the write fails with a connection error, but the
    /// new content is kept and written by the re-registration.
    pub async fn update(&self, f: impl FnOnce(&mut Component)) -> ZkResult<()> {
        let (name, component, version) = {
            let mut st = self.state.lock_or_recover();
            f(&mut st.component);
            (st.name.clone(), st.component.clone(), st.version)
        };
        let r = match self
            .store
            .update_component(&name, &component, Some(version))
            .await
        {
            Err(ZkError::BadVersion(_)) => {
                // Nobody else writes our znode; re-read the version once and retry.
                let path = paths::component(component.kind, &name);
                let v = self.store.client.exists(&path).await?.map(|s| s.version);
                self.store.update_component(&name, &component, v).await
            }
            r => r,
        };
        let stat = r?;
        let mut st = self.state.lock_or_recover();
        if st.name == name {
            st.version = stat.version;
        }
        Ok(())
    }

    /// Stops re-registering and deletes the znode.
    pub async fn unregister(self) -> ZkResult<()> {
        self.cancel.cancel();
        let path = self.path();
        match self.store.client.delete(&path, None).await {
            Ok(()) | Err(ZkError::NoNode(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Re-creates the component znode whenever a new session is up.
async fn reregister(store: ZkStore, state: Arc<Mutex<RegState>>, cancel: CancellationToken) {
    let mut status = store.client.watch_status();
    loop {
        let registered = state.lock_or_recover().generation;
        let wait = status.wait_for(|s| {
            (s.generation > registered && s.state == ConnectionState::Connected)
                || s.state == ConnectionState::Closed
        });
        let now = tokio::select! {
            _ = cancel.cancelled() => return,
            r = wait => match r {
                Ok(s) => *s,
                Err(_) => return,
            },
        };
        if now.state == ConnectionState::Closed {
            return;
        }
        let (previous, owner, component) = {
            let st = state.lock_or_recover();
            (st.name.clone(), st.owner, st.component.clone())
        };
        match store
            .reregister_component(&component, &previous, owner)
            .await
        {
            Ok((name, stat)) => {
                info!(kind = %component.kind, name = %name, generation = now.generation,
                    "re-registered component after new session");
                let mut st = state.lock_or_recover();
                st.name = name;
                st.version = stat.version;
                st.owner = stat.ephemeral_owner;
                st.generation = now.generation;
            }
            Err(e) => {
                debug!("component re-registration failed, retrying: {e}");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contender_names() {
        assert!(is_lock_contender(
            "9f54667cbcfc403587c22e036a44174b__lock__0000000000"
        ));
        assert!(is_lock_contender("x__lock__-000000001"));
        assert!(!is_lock_contender("9f54__rlock__0000000000"));
        assert!(!is_lock_contender("lock"));
        assert!(!is_lock_contender("abc__lock__12"));
        let mut v = vec![
            "b__lock__0000000002".to_string(),
            "a__lock__0000000003".to_string(),
            "c__lock__0000000001".to_string(),
        ];
        sort_contenders(&mut v);
        assert_eq!(
            v,
            [
                "c__lock__0000000001",
                "b__lock__0000000002",
                "a__lock__0000000003"
            ]
        );
    }

    #[test]
    fn flag_times() {
        let t = FlagTimes {
            created: 100.0,
            modified: 150.0,
        };
        assert_eq!(t.age(160.0), 60.0);
        assert_eq!(t.age(50.0), 0.0);
    }
}
