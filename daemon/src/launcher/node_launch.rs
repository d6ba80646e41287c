//! The ZooKeeper side of launching one node: create the
//! `init` record, lock it, `building`, resolve the image and store what the image config
//! says (username, python_path, shell_type, connection — from the current config, also
//! for diskimages — and resources), boot the server via
//! [`launch_with_retries_reporting`] (storing the server id as soon as it exists, and the
//! instance facts before the host-key scan), store the instance facts and `ready` — or
//! `aborted` on a quota error, `failed` after the retries. Launch metrics are emitted
//! here.
//!
//! A node record deleted during the launch (its lock child was removed and the
//! DeletedNodeWorker took the node) stops the launch: no further attempt is made, the
//! server it created is deleted at once, and the request is declined as after any failed
//! launch.
//!
//! Host keys: unless the label has `host-key-checking: false`, the launch scans the
//! server's `connection-port` once it is reachable ([`KeyscanSpec`]) and the keys found
//! are stored in `host_keys` with the `ready` state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nodepool_shared::config::{CloudImageRef, Pool, PoolLabel, PoolLabelImage, Provider};
use nodepool_shared::model::paths;
use nodepool_shared::model::{Node, NodeId, NodeRequest, NodeState, QuotaInformation, UploadState};
use nodepool_shared::stats::names;
use nodepool_shared::zk::{ZkError, ZkLock};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::delete::{delete_server, DELETE_TIMEOUT};
use super::failure::LaunchError;
use super::launch::{ImageRef, KeyscanSpec, LaunchProgress, LaunchSpec};
use super::lookups::flavor_spec;
use super::metadata::{build_metadata, server_name, MetadataInput, RequestAttributes};
use super::providers::ProviderHandle;
use super::retry::{launch_with_retries_reporting, AttemptOptions, RetryOutcome};
use super::runtime::{Counters, LauncherContext};

/// How a launch ended.
#[derive(Clone, Debug, PartialEq)]
pub enum LaunchResult {
    /// The node is `ready`.
    Ready,
    /// The cloud refused for quota: the node is `aborted`; launch a replacement later.
    Aborted,
    /// Gave up (retries exhausted, image missing, ZooKeeper trouble).
    Failed(String),
}

/// A node this launcher created and holds the lock of.
pub struct OwnedNode {
    /// The node as last stored.
    pub node: Node,
    /// Its lock (held).
    pub lock: ZkLock,
}

impl OwnedNode {
    /// Writes the node (unconditional set, as Nodepool does); retried across a
    /// connection loss (we hold the lock, the write is idempotent). Once the lock's
    /// session is gone (expired or replaced) nothing is written: the node may already
    /// belong to another launcher's cleanup, so the write fails with
    /// [`ZkError::SessionExpired`] instead (checked again before every retry).
    pub async fn store(&self, ctx: &LauncherContext) -> Result<(), ZkError> {
        super::zk_retry::retry_transient("storing node", || async {
            if !self.lock.is_held() {
                return Err(self.lock_lost_error());
            }
            ctx.store.store_node(&self.node, None).await
        })
        .await
        .map(|_| ())
    }

    /// True once the node's lock went with its ZooKeeper session.
    pub fn lock_lost(&self) -> bool {
        !self.lock.is_held()
    }

    fn lock_lost_error(&self) -> ZkError {
        ZkError::SessionExpired {
            op: "set",
            path: paths::node(&self.node.id),
        }
    }

    /// Releases the lock (errors are logged: the session end releases it anyway).
    pub async fn unlock(mut self) {
        if let Err(e) = self.lock.release().await {
            tracing::warn!(node = %self.node.id, error = %e, "cannot release node lock");
        }
    }
}

/// What a new node is for.
#[derive(Clone)]
pub struct NodeOrder {
    /// Pool worker id (node `launcher`).
    pub launcher_id: String,
    /// The provider config.
    pub provider: Provider,
    /// The pool config.
    pub pool: Pool,
    /// The label config.
    pub label: PoolLabel,
    /// The request it is allocated to.
    pub request: Arc<NodeRequest>,
    /// Chosen availability zone.
    pub az: Option<String>,
    /// The ZooKeeper session generation the request lock was taken in: a node created
    /// in another session is not launched (see [`create_node`]).
    pub session: Option<u64>,
}

/// Creates the `init` record (allocated to the request), locks it and stores `building`.
pub async fn create_node(
    ctx: &LauncherContext,
    order: &NodeOrder,
    provider: &ProviderHandle,
    need: QuotaInformation,
) -> Result<OwnedNode, ZkError> {
    let mut node = Node::new();
    node.node_type = vec![order.label.name.clone()];
    node.provider = Some(order.provider.name.clone());
    node.pool = Some(order.pool.name.clone());
    node.launcher = Some(order.launcher_id.clone());
    node.allocated_to = Some(order.request.id.clone());
    node.tenant_name = order.request.tenant_name.clone();
    node.requestor = order.request.requestor.clone();
    node.az = order.az.clone();
    node.cloud = Some(order.provider.cloud.clone());
    node.region = order.provider.region_name.clone();
    node.attributes = if order.pool.node_attributes.is_empty() {
        Value::Null
    } else {
        Value::Object(order.pool.node_attributes.clone())
    };
    let generation = order
        .session
        .unwrap_or_else(|| ctx.store.client().generation());
    let id = ctx.store.create_node(&mut node).await?;
    // The node is new: its lock dir and our contender go in one round trip.
    let mut lock = ZkLock::new(ctx.store.client(), &paths::node_lock(&id), b"").expect_new_dir();
    match lock.acquire(Some(Duration::from_secs(10))).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(ZkError::Corrupt(format!(
                "new node {id} is locked by someone else"
            )))
        }
        Err(e) => return Err(e),
    }
    // The session changed around the create (the process was frozen past its session
    // timeout): the request lock is gone, so this node must not be launched. Either the
    // create ran on the new session (an `init` node nobody else would ever remove), or
    // it ran on the old one and another launcher's cleanup removed the unlocked node,
    // after which the lock (kazoo's recipe creates missing parents) re-created an empty
    // znode. We hold the lock now (new session): remove the znode either way.
    if lock.generation() != Some(generation) {
        tracing::warn!(node = %id, request = %order.request.id,
            "ZooKeeper session changed while creating the node; removing it");
        if let Err(e) = ctx.store.delete_node_znode(&id).await {
            tracing::warn!(node = %id, error = %e, "cannot remove the node");
        }
        let _ = lock.release().await;
        return Err(ZkError::SessionExpired {
            op: "create",
            path: paths::node(&id),
        });
    }
    provider.claim(id.clone(), need);
    node.set_state(NodeState::Building);
    let owned = OwnedNode { node, lock };
    owned.store(ctx).await?;
    Ok(owned)
}

/// The image a label boots: the spec reference, `image_id` for the node, and the image
/// config values copied onto the node.
struct ImageChoice {
    image: ImageRef,
    image_id: String,
    image_name: String,
    username: Option<String>,
    python_path: Option<String>,
    shell_type: Option<String>,
    connection_type: String,
    connection_port: u16,
    config_drive: Option<bool>,
}

/// Newest `ready` upload of `image` for `provider` in the cache: (path, upload).
pub fn newest_ready_upload(
    ctx: &LauncherContext,
    image: &str,
    provider: &str,
) -> Option<nodepool_shared::model::ImageUpload> {
    ctx.cache
        .uploads()
        .into_iter()
        .filter(|u| {
            u.upload.image == image
                && u.upload.provider == provider
                && u.upload.state == UploadState::Ready
                && u.upload.external_id.is_some()
        })
        .max_by(|a, b| {
            a.upload
                .state_time
                .total_cmp(&b.upload.state_time)
                .then(a.upload.id.cmp(&b.upload.id))
        })
        .map(|u| u.upload.clone())
}

/// The image of a label. For a diskimage: the newest ready upload, with `username`,
/// `python-path` and `shell-type` from the current config's diskimage and the
/// connection from the provider's diskimage entry (as Nodepool does; the upload record's
/// copies may be from an older config). For a cloud image: its config entry; an
/// `image-name` is looked up now (so a missing image fails early) and again by every
/// attempt through the provider's caches.
async fn choose_image(
    ctx: &LauncherContext,
    provider: &ProviderHandle,
    order: &NodeOrder,
) -> Result<ImageChoice, LaunchError> {
    match &order.label.image {
        PoolLabelImage::DiskImage(name) => {
            let upload = newest_ready_upload(ctx, name, &order.provider.name)
                .ok_or_else(|| LaunchError::ImageNotFound(format!("{name} (no ready upload)")))?;
            let config = ctx.config();
            let di = config.diskimage(name);
            let pdi = order.provider.diskimage(name);
            Ok(ImageChoice {
                image: ImageRef::Id(upload.external_id.clone().unwrap_or_default()),
                image_id: upload.path(),
                image_name: name.clone(),
                username: di.map(|d| d.username.clone()).or(upload.username),
                python_path: di.map(|d| d.python_path.clone()).or(upload.python_path),
                shell_type: match di {
                    Some(d) => d.shell_type.clone(),
                    None => upload.shell_type,
                },
                connection_type: pdi
                    .map(|d| d.connection_type.clone())
                    .unwrap_or_else(|| "ssh".into()),
                connection_port: pdi.map(|d| d.connection_port).unwrap_or(22),
                config_drive: pdi.and_then(|d| d.config_drive),
            })
        }
        PoolLabelImage::CloudImage(name) => {
            let ci = order
                .provider
                .cloud_image(name)
                .ok_or_else(|| LaunchError::ImageNotFound(name.clone()))?;
            let id = provider
                .cloud_image_id(name)
                .await?
                .ok_or_else(|| LaunchError::ImageNotFound(name.clone()))?;
            Ok(ImageChoice {
                image: match &ci.image {
                    CloudImageRef::Name(n) => ImageRef::Name(n.clone()),
                    CloudImageRef::Id(_) => ImageRef::Id(id),
                },
                image_id: name.clone(),
                image_name: name.clone(),
                username: ci.username.clone(),
                python_path: Some(ci.python_path.clone()),
                shell_type: ci.shell_type.clone(),
                connection_type: ci.connection_type.clone(),
                connection_port: ci.connection_port,
                config_drive: ci.config_drive,
            })
        }
    }
}

fn stringify(map: &serde_json::Map<String, Value>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), s)
        })
        .collect()
}

/// Sends the launch c+ms stats for one outcome: the [`names::launch_keys`] and, for a
/// diskimage label, `nodepool.launch.image.<image>.<result>`.
fn launch_stats(
    ctx: &LauncherContext,
    order: &NodeOrder,
    az: Option<&str>,
    result: &str,
    elapsed: Duration,
) {
    for key in names::launch_keys(
        &order.provider.name,
        az,
        order.request.requestor.as_deref(),
        result,
    ) {
        ctx.statsd.timer_and_count(&key, elapsed);
    }
    if let PoolLabelImage::DiskImage(image) = &order.label.image {
        ctx.statsd
            .timer_and_count(&names::launch_image(image, result), elapsed);
    }
}

/// The server create for `owned` as the label, pool, provider and image ask for it.
fn launch_spec(order: &NodeOrder, owned: &OwnedNode, image: ImageChoice) -> LaunchSpec {
    let meta = build_metadata(&MetadataInput {
        node_id: owned.node.id.as_str().to_string(),
        provider: order.provider.name.clone(),
        pool: order.pool.name.clone(),
        image_name: image.image_name.clone(),
        label: order.label.name.clone(),
        instance_properties: stringify(&order.label.instance_properties),
        dynamic_instance_properties: order.label.dynamic_instance_properties.clone(),
        request: RequestAttributes::from_request(&order.request),
    });
    LaunchSpec {
        name: server_name(owned.node.id.as_str()),
        flavor: flavor_spec(&order.label),
        image: image.image,
        key_name: order.label.key_name.clone(),
        networks: order.label.networks.clone(),
        security_groups: order.pool.security_groups.clone(),
        availability_zone: order.az.clone(),
        metadata: meta.meta,
        userdata: order.label.userdata.clone(),
        config_drive: image.config_drive,
        boot_from_volume: order.label.boot_from_volume,
        volume_size: order.label.volume_size,
        auto_floating_ip: order.pool.auto_floating_ip,
        boot_timeout: order.provider.boot_timeout,
        launch_timeout: order.provider.launch_timeout,
        keyscan: order
            .label
            .host_key_checking
            .then(|| KeyscanSpec::new(image.connection_port, &image.connection_type)),
        console_log: order.label.console_log,
        cloud: Some(order.provider.cloud.clone()),
        region: order.provider.region_name.clone(),
        ..Default::default()
    }
}

/// One node launch, phase by phase: [`prepare`](Self::prepare) (image, node fields),
/// [`boot`](Self::boot) (the server, with retries, storing progress), then
/// [`finish`](Self::finish) (`ready`, `aborted` or `failed`).
struct NodeLaunch<'a> {
    ctx: &'a Arc<LauncherContext>,
    provider: &'a Arc<ProviderHandle>,
    order: &'a NodeOrder,
    started: tokio::time::Instant,
}

/// A launch that ended early, with what to hand back.
type Ended = (OwnedNode, LaunchResult);

impl NodeLaunch<'_> {
    /// Stats for `result` with the node's (or the order's) AZ.
    fn stats(&self, az: Option<&str>, result: &str) {
        launch_stats(self.ctx, self.order, az, result, self.started.elapsed());
    }

    /// Chooses the image and stores what the node gets from it and from the flavor.
    async fn prepare(&self, mut owned: OwnedNode) -> Result<(OwnedNode, ImageChoice), Ended> {
        let image = match choose_image(self.ctx, self.provider, self.order).await {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(node = %owned.node.id, error = %e, "cannot launch node");
                self.stats(owned.node.az.as_deref(), e.stats_key());
                return Err(fail(self.ctx, owned, e.to_string()).await);
            }
        };
        let flavor = self.provider.flavor(&self.order.label).await.ok();
        let n = &mut owned.node;
        n.image_id = Some(image.image_id.clone());
        n.username = image.username.clone();
        n.python_path = image.python_path.clone();
        n.shell_type = image.shell_type.clone();
        n.connection_type = Some(image.connection_type.clone());
        n.connection_port = image.connection_port;
        if let Some(f) = &flavor {
            let label = &self.order.label;
            let bfv = label.boot_from_volume.then_some(label.volume_size);
            n.resources = Some(f.quota(bfv).to_resources());
        }
        if let Err(e) = owned.store(self.ctx).await {
            if owned.lock_lost() {
                return Err(self.abandon(owned));
            }
            return Err(fail(self.ctx, owned, format!("storing node: {e}")).await);
        }
        Ok((owned, image))
    }

    fn abandon(&self, owned: OwnedNode) -> Ended {
        abandon(self.ctx, self.order, owned, self.started.elapsed())
    }

    /// Boots the server (with `launch-retries`), storing each attempt's server id as soon
    /// as it exists (a launcher that dies now leaves a node whose server the
    /// deleter can find) and, as Nodepool does, the instance facts once the server is up,
    /// before the host-key scan. Stops when the node lock goes with the session.
    async fn boot(
        &self,
        mut owned: OwnedNode,
        spec: &LaunchSpec,
    ) -> Result<(OwnedNode, RetryOutcome), Ended> {
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let opts = AttemptOptions {
            progress: Some(progress_tx),
            lookups: Some(self.provider.lookups.clone()),
            stop: Some(stop.clone()),
        };
        let az = self.order.az.clone();
        let launch = launch_with_retries_reporting(
            self.provider.runtime.driver.as_ref(),
            spec,
            self.order.provider.launch_retries,
            DELETE_TIMEOUT,
            &opts,
            |err, elapsed| {
                if !err.is_quota() {
                    launch_stats(
                        self.ctx,
                        self.order,
                        az.as_deref(),
                        err.stats_key(),
                        elapsed,
                    );
                }
            },
        );
        tokio::pin!(launch);
        let lost = owned.lock.lost();
        tokio::pin!(lost);
        let deleted = node_deleted(self.ctx, owned.node.id.clone());
        tokio::pin!(deleted);
        let outcome = loop {
            tokio::select! {
                out = &mut launch => break out,
                // The session (and with it the node lock) is gone: stop here. Whoever
                // cleans up the unlocked node deletes its server (or the leak cleanup does).
                () = &mut lost => return Err(self.abandon(owned)),
                // Someone deleted the node record (its lock was taken from us): stop the
                // launch; its server is deleted below, once the attempt has ended.
                () = &mut deleted, if !stop.is_cancelled() => {
                    tracing::warn!(node = %owned.node.id, request = %self.order.request.id,
                        "node record deleted during the launch; stopping it");
                    stop.cancel();
                }
                Some(progress) = progress_rx.recv() => {
                    let what = match progress {
                        LaunchProgress::Created(server_id) => {
                            owned.node.external_id = Some(server_id);
                            "server id"
                        }
                        LaunchProgress::Reachable(facts) => {
                            facts.apply_to(&mut owned.node);
                            "instance facts"
                        }
                    };
                    if let Err(e) = owned.store(self.ctx).await {
                        tracing::warn!(node = %owned.node.id, error = %e, "cannot store {what}");
                        if matches!(e, ZkError::NoNode(_)) {
                            stop.cancel();
                        }
                    }
                }
            }
        };
        if stop.is_cancelled() {
            return Err(self.node_vanished(owned, outcome.external_id).await);
        }
        Ok((owned, outcome))
    }

    /// Ends a launch whose node record was deleted under it: deletes the server it
    /// created right away (a server without a node would otherwise live until the leak
    /// cleanup finds it) and writes nothing more about the node.
    async fn node_vanished(&self, owned: OwnedNode, last: Option<String>) -> Ended {
        let mut servers: Vec<String> = last.into_iter().collect();
        if let Some(id) = owned.node.external_id.clone() {
            if !servers.contains(&id) {
                servers.push(id);
            }
        }
        let driver = self.provider.runtime.driver.as_ref();
        for server in servers {
            match delete_server(driver, &server, DELETE_TIMEOUT).await {
                Ok(()) => tracing::info!(node = %owned.node.id, server = %server,
                    "deleted the server of a node whose record was deleted"),
                Err(e) => tracing::warn!(node = %owned.node.id, server = %server, error = %e,
                    "cannot delete the server of a node whose record was deleted; the leak cleanup will"),
            }
        }
        Counters::bump(&self.ctx.counters.launches_failed);
        (
            owned,
            LaunchResult::Failed("the node record was deleted during the launch".into()),
        )
    }

    /// Stores how the launch ended: `ready`, `aborted` (cloud quota; the provider quota
    /// cache is invalidated) or `failed`.
    async fn finish(&self, mut owned: OwnedNode, outcome: RetryOutcome) -> Ended {
        let order = self.order;
        match outcome.result {
            Ok(facts) => {
                facts.apply_to(&mut owned.node);
                if owned.node.resources.is_none() {
                    owned.node.resources = Some(facts.resources.to_resources());
                }
                owned.node.set_state(NodeState::Ready);
                if let Err(e) = owned.store(self.ctx).await {
                    if owned.lock_lost() {
                        return self.abandon(owned);
                    }
                    if matches!(e, ZkError::NoNode(_)) {
                        return self.node_vanished(owned, None).await;
                    }
                    return fail(self.ctx, owned, format!("storing ready node: {e}")).await;
                }
                self.stats(owned.node.az.as_deref(), names::result::READY);
                Counters::bump(&self.ctx.counters.launches_ready);
                tracing::info!(node = %owned.node.id, server = ?owned.node.external_id,
                    request = %order.request.id, "node ready");
                (owned, LaunchResult::Ready)
            }
            Err(e) if e.is_quota() => {
                self.stats(order.az.as_deref(), e.stats_key());
                self.provider.runtime.quota.invalidate();
                tracing::warn!(node = %owned.node.id, error = %e, "launch aborted by cloud quota");
                owned.node.external_id = outcome.external_id.or(owned.node.external_id.take());
                owned.node.set_state(NodeState::Aborted);
                if let Err(err) = owned.store(self.ctx).await {
                    tracing::warn!(node = %owned.node.id, error = %err, "cannot store aborted node");
                }
                Counters::bump(&self.ctx.counters.launches_failed);
                (owned, LaunchResult::Aborted)
            }
            Err(e) => {
                if matches!(
                    e,
                    LaunchError::FlavorNotFound { .. } | LaunchError::ImageNotFound(_)
                ) {
                    self.provider.forget_lookups();
                }
                tracing::error!(node = %owned.node.id, attempts = outcome.attempts, error = %e,
                    "launch failed");
                if let Some(id) = outcome.external_id {
                    owned.node.external_id = Some(id);
                }
                fail(self.ctx, owned, e.to_string()).await
            }
        }
    }
}

/// Boots the server for a `building` node and stores the outcome (the lock stays held).
pub async fn run_launch(
    ctx: Arc<LauncherContext>,
    provider: Arc<ProviderHandle>,
    order: NodeOrder,
    owned: OwnedNode,
) -> (OwnedNode, LaunchResult) {
    let _active = provider.launch_started();
    Counters::bump(&ctx.counters.launches_started);
    let launch = NodeLaunch {
        ctx: &ctx,
        provider: &provider,
        order: &order,
        started: tokio::time::Instant::now(),
    };
    let (owned, image) = match launch.prepare(owned).await {
        Ok(p) => p,
        Err(ended) => return ended,
    };
    let spec = launch_spec(&order, &owned, image);
    match launch.boot(owned, &spec).await {
        Ok((owned, outcome)) => launch.finish(owned, outcome).await,
        Err(ended) => ended,
    }
}

/// Resolves once node `id`'s znode no longer exists (watched, not polled; a failed read
/// is tried again a second later: the session's loss is the `lost` future's business).
async fn node_deleted(ctx: &LauncherContext, id: NodeId) {
    let path = paths::node(&id);
    loop {
        match ctx.store.client().exists_and_watch(&path).await {
            Ok((None, _, _)) => return,
            Ok((Some(_), watcher, _)) => {
                watcher.changed().await;
            }
            Err(e) => {
                tracing::debug!(node = %id, error = %e, "cannot watch the node record");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Gives up a launch whose node lock went with the ZooKeeper session
/// (`nodepool.launch.error.zksession`): nothing more is written, the
/// node now belongs to whoever cleans up unlocked nodes.
fn abandon(
    ctx: &LauncherContext,
    order: &NodeOrder,
    owned: OwnedNode,
    elapsed: Duration,
) -> (OwnedNode, LaunchResult) {
    tracing::warn!(node = %owned.node.id, request = %order.request.id,
        "ZooKeeper session lost during the launch: abandoning the node");
    launch_stats(
        ctx,
        order,
        owned.node.az.as_deref(),
        names::result::ERROR_ZKSESSION,
        elapsed,
    );
    Counters::bump(&ctx.counters.launches_failed);
    (owned, LaunchResult::Failed("ZooKeeper session lost".into()))
}

/// Marks the node `failed` (stored; the DeletedNodeWorker removes it once unlocked).
async fn fail(
    ctx: &LauncherContext,
    mut owned: OwnedNode,
    why: String,
) -> (OwnedNode, LaunchResult) {
    if owned.lock_lost() {
        tracing::warn!(node = %owned.node.id, why, "launch failed after the ZooKeeper session was lost; not storing it");
        Counters::bump(&ctx.counters.launches_failed);
        return (owned, LaunchResult::Failed(why));
    }
    Counters::bump(&ctx.counters.launches_failed);
    owned.node.set_state(NodeState::Failed);
    if let Err(e) = owned.store(ctx).await {
        tracing::warn!(node = %owned.node.id, error = %e, "cannot store failed node");
    }
    (owned, LaunchResult::Failed(why))
}

/// The id of a node, for logs.
pub fn id_of(o: &OwnedNode) -> &NodeId {
    &o.node.id
}
