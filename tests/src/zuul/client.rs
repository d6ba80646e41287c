//! [`FakeZuul`]: the requestor side of the Nodepool protocol, speaking only ZooKeeper,
//! exactly as Zuul does: submit a request, wait for it through watches,
//! accept it (lock the nodes, always delete the request), use and return the nodes, hold
//! them, cancel a request, revise its priority under the request lock.

use std::time::Duration;

use nodepool_shared::model::{
    paths, to_python_json, Node, NodeId, NodeRequest, NodeState, RequestId, RequestState,
};
use nodepool_shared::zk::{SessionEvent, ZkClient, ZkError, ZkLock};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::error::{ZuulError, ZuulResult};
use super::node::HeldNode;
use super::request::{precedence, requestor_data, zuul_submission, Outcome};

/// Pause before reading a request again after ZooKeeper failed to answer.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// How long Zuul waits for a node lock when accepting a request.
pub const NODE_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// A Zuul scheduler as far as Nodepool can tell: one system id, one ZooKeeper session.
/// Cheap to clone (clones share the session).
#[derive(Clone, Debug)]
pub struct FakeZuul {
    client: ZkClient,
    system_id: String,
    pipeline_name: String,
    job_name: String,
    node_lock_timeout: Duration,
}

/// Returns at the next session event that calls for reading again: the session was lost
/// or replaced, or events were missed. A closed client never returns (the next read
/// reports it).
async fn session_changed(events: &mut broadcast::Receiver<SessionEvent>) {
    loop {
        match events.recv().await {
            Ok(SessionEvent::Lost | SessionEvent::Reconnected(_))
            | Err(broadcast::error::RecvError::Lagged(_)) => return,
            Ok(SessionEvent::Connected | SessionEvent::Suspended) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

fn new_uuid_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl FakeZuul {
    /// A fake Zuul with system id `system_id` (Zuul writes it as the request's
    /// `requestor` and as `zuul_system` in node `user_data`).
    pub fn new(client: ZkClient, system_id: impl Into<String>) -> FakeZuul {
        FakeZuul {
            client,
            system_id: system_id.into(),
            pipeline_name: "check".into(),
            job_name: "zuul-sim-job".into(),
            node_lock_timeout: NODE_LOCK_TIMEOUT,
        }
    }

    /// Pipeline name written into `requestor_data` (default `check`).
    pub fn with_pipeline(mut self, name: impl Into<String>) -> FakeZuul {
        self.pipeline_name = name.into();
        self
    }

    /// Job name written into `requestor_data` (default `zuul-sim-job`).
    pub fn with_job_name(mut self, name: impl Into<String>) -> FakeZuul {
        self.job_name = name.into();
        self
    }

    /// How long [`Self::accept`] waits for each node lock (default 30 s, like Zuul).
    pub fn with_node_lock_timeout(mut self, timeout: Duration) -> FakeZuul {
        self.node_lock_timeout = timeout;
        self
    }

    /// The ZooKeeper client.
    pub fn client(&self) -> &ZkClient {
        &self.client
    }

    /// The system id.
    pub fn system_id(&self) -> &str {
        &self.system_id
    }

    /// Submits a request for `labels` (order matters) with precedence `priority`
    /// (100, 200 or 300): a persistent sequential `/nodepool/requests/<prio>-` with exactly
    /// the keys Zuul writes. Returns the new request id.
    pub async fn submit(
        &self,
        labels: &[String],
        priority: u16,
        relative_priority: i64,
        tenant: &str,
        provider: Option<&str>,
    ) -> ZuulResult<RequestId> {
        if labels.is_empty() {
            return Err(ZuulError::NoLabels);
        }
        let prec = precedence(priority)?;
        let mut req = NodeRequest::new(labels.to_vec(), self.system_id.clone());
        req.requestor_data = requestor_data(
            &new_uuid_hex(),
            tenant,
            &self.pipeline_name,
            &new_uuid_hex(),
            &self.job_name,
        );
        req.provider = provider.map(str::to_string);
        req.relative_priority = relative_priority;
        req.event_id = Some(new_uuid_hex());
        req.tenant_name = Some(tenant.to_string());
        let data = to_python_json(&zuul_submission(&req), false);
        let created = self
            .client
            .create_sequential(&paths::request_create_prefix(&prec), &data, false)
            .await?;
        let id = created
            .strip_prefix(paths::REQUESTS)
            .and_then(|s| s.strip_prefix('/'))
            .filter(|s| s.len() > 4 && s.as_bytes()[3] == b'-' && !s.contains('/'))
            .ok_or_else(|| ZuulError::BadCreatedPath(created.clone()))?;
        Ok(RequestId::from(id))
    }

    /// The request as stored now; `None` if it does not exist (or has no data).
    pub async fn get_request(&self, id: &RequestId) -> ZuulResult<Option<NodeRequest>> {
        match self.client.get(&paths::request(id)).await? {
            None => Ok(None),
            Some((data, _)) => Ok(NodeRequest::from_json(id, &data)?),
        }
    }

    /// Waits until the request is fulfilled or failed, or its znode is gone, re-arming a
    /// ZooKeeper data watch after every change (no polling). Like Zuul's watches (kazoo
    /// re-runs them on reconnect), it reads the request again after any change of the
    /// session: a watch of an expired session may never fire, and the request may have
    /// been fulfilled (or deleted) meanwhile; while ZooKeeper does not answer it keeps
    /// trying. Fails with [`ZuulError::WaitTimeout`] after `timeout` (the request is left
    /// in place).
    pub async fn wait(&self, id: &RequestId, timeout: Duration) -> ZuulResult<Outcome> {
        let path = paths::request(id);
        let deadline = Instant::now() + timeout;
        let timed_out = || ZuulError::WaitTimeout {
            request: id.clone(),
            timeout,
        };
        // Subscribed before the first read, so no session change between them is missed.
        let mut sessions = self.client.subscribe();
        loop {
            let read = tokio::time::timeout_at(deadline, self.client.get_and_watch(&path))
                .await
                .map_err(|_| timed_out())?;
            let got = match read {
                Ok(got) => got,
                // ZooKeeper away (longer than one call's timeout) or the session being
                // replaced: keep waiting for the request, as Zuul does, and read again.
                Err(e) if e.is_connection_problem() && !matches!(e, ZkError::Closed) => {
                    tracing::debug!(request = %id, error = %e, "cannot read the request; trying again");
                    tokio::time::timeout_at(deadline, tokio::time::sleep(RETRY_PAUSE))
                        .await
                        .map_err(|_| timed_out())?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let Some((data, _, watcher)) = got else {
                return Ok(Outcome::Gone);
            };
            if let Some(req) = NodeRequest::from_json(id, &data)? {
                match req.state {
                    RequestState::Fulfilled => return Ok(Outcome::Fulfilled(req)),
                    RequestState::Failed => return Ok(Outcome::Failed(req)),
                    RequestState::Requested | RequestState::Pending => {}
                }
            }
            // Any event (data change, delete, session trouble) means: look again.
            let changed = async {
                tokio::select! {
                    _ = watcher.changed() => {}
                    _ = session_changed(&mut sessions) => {}
                }
            };
            tokio::time::timeout_at(deadline, changed)
                .await
                .map_err(|_| timed_out())?;
        }
    }

    /// Accepts a finished request like Zuul: if it is fulfilled, for each node (paired
    /// positionally with `node_types`) read it, require `allocated_to` = the request, lock
    /// `/nodepool/nodes/<id>/lock` (blocking up to the node lock timeout), re-read and
    /// re-check; then **always** delete the request znode. On any failure the nodes
    /// locked so far are unlocked and the error returned (the request is still deleted).
    pub async fn accept(&self, request: &NodeRequest) -> ZuulResult<Vec<HeldNode>> {
        let locked = if request.state == RequestState::Fulfilled {
            self.lock_nodes(request).await
        } else {
            Err(ZuulError::NotFulfilled {
                request: request.id.clone(),
                state: request.state.to_string(),
            })
        };
        let deleted = self.cancel(&request.id).await;
        match (locked, deleted) {
            (Ok(nodes), Ok(_)) => Ok(nodes),
            (Ok(nodes), Err(e)) => {
                self.unlock(nodes).await;
                Err(e)
            }
            (Err(e), _) => Err(e),
        }
    }

    async fn lock_nodes(&self, request: &NodeRequest) -> ZuulResult<Vec<HeldNode>> {
        if request.nodes.len() != request.node_types.len() {
            return Err(ZuulError::NodeCountMismatch {
                request: request.id.clone(),
                labels: request.node_types.len(),
                nodes: request.nodes.len(),
            });
        }
        let mut held = Vec::with_capacity(request.nodes.len());
        for (label, node_id) in request.node_types.iter().zip(&request.nodes) {
            match self.lock_node(request, label, node_id).await {
                Ok(h) => held.push(h),
                Err(e) => {
                    self.unlock(held).await;
                    return Err(e);
                }
            }
        }
        Ok(held)
    }

    /// Reads node `id` as a raw JSON object (validated with the model); `None` if it is
    /// missing or empty.
    async fn read_node(&self, id: &NodeId) -> ZuulResult<Option<Map<String, Value>>> {
        let Some((data, _)) = self.client.get(&paths::node(id)).await? else {
            return Ok(None);
        };
        if Node::from_json(id, &data)?.is_none() {
            return Ok(None);
        }
        serde_json::from_slice::<Map<String, Value>>(&data)
            .map(Some)
            .map_err(|_| ZuulError::NodeNotAnObject { node: id.clone() })
    }

    /// Reads the node and checks it is allocated to `request`.
    async fn read_allocated(
        &self,
        request: &NodeRequest,
        node_id: &NodeId,
    ) -> ZuulResult<Map<String, Value>> {
        let data = self
            .read_node(node_id)
            .await?
            .ok_or_else(|| ZuulError::NodeMissing {
                request: request.id.clone(),
                node: node_id.clone(),
            })?;
        let allocated_to = data.get("allocated_to").and_then(Value::as_str);
        if allocated_to != Some(request.id.as_str()) {
            return Err(ZuulError::NotAllocated {
                request: request.id.clone(),
                node: node_id.clone(),
                allocated_to: allocated_to.map(str::to_string),
            });
        }
        Ok(data)
    }

    async fn lock_node(
        &self,
        request: &NodeRequest,
        label: &str,
        node_id: &NodeId,
    ) -> ZuulResult<HeldNode> {
        self.read_allocated(request, node_id).await?;
        let mut lock = ZkLock::new(&self.client, &paths::node_lock(node_id), b"");
        if !lock.acquire(Some(self.node_lock_timeout)).await? {
            return Err(ZuulError::LockTimeout {
                request: request.id.clone(),
                node: node_id.clone(),
                timeout: self.node_lock_timeout,
            });
        }
        match self.read_allocated(request, node_id).await {
            Ok(data) => Ok(HeldNode {
                id: node_id.clone(),
                request: request.id.clone(),
                label: label.to_string(),
                data,
                lock,
            }),
            Err(e) => {
                let _ = lock.release().await;
                Err(e)
            }
        }
    }

    /// Writes a held node back the way Zuul does (every key read, plus `id`).
    async fn store(&self, node: &HeldNode) -> ZuulResult<()> {
        let data = node.to_write()?;
        self.client.set(&paths::node(&node.id), &data, None).await?;
        Ok(())
    }

    /// Marks the nodes `in-use` with `user_data = {"zuul_system", "project_name"}` while we
    /// hold their locks (Zuul's `useNodeSet`).
    pub async fn use_nodes(&self, nodes: &mut [HeldNode], project_name: &str) -> ZuulResult<()> {
        for node in nodes.iter_mut() {
            node.set_state(NodeState::InUse);
            node.set(
                "user_data",
                json!({"zuul_system": self.system_id, "project_name": project_name}),
            );
            self.store(node).await?;
        }
        Ok(())
    }

    /// Returns the nodes (Zuul's `returnNodeSet`): every node we still hold that is
    /// `in-use` becomes `used`, then all are unlocked (the launcher deletes used nodes).
    /// Returns the first write error, after unlocking everything.
    pub async fn return_nodes(&self, nodes: Vec<HeldNode>) -> ZuulResult<()> {
        let mut first_err = None;
        let mut nodes = nodes;
        for node in nodes.iter_mut() {
            if node.is_locked() && node.state() == Some(NodeState::InUse.as_str()) {
                node.set_state(NodeState::Used);
                if let Err(e) = self.store(node).await {
                    first_err.get_or_insert(e);
                }
            }
        }
        self.unlock(nodes).await;
        first_err.map_or(Ok(()), Err)
    }

    /// Autoholds a node (Zuul after a failed job matching an autohold): state `hold`,
    /// `hold_job`, `comment` and, if given, `hold_expiration` (seconds), then unlocks it.
    pub async fn hold(
        &self,
        mut node: HeldNode,
        job: &str,
        comment: &str,
        expiration: Option<i64>,
    ) -> ZuulResult<()> {
        node.set_state(NodeState::Hold);
        node.set("hold_job", Value::String(job.into()));
        node.set("comment", Value::String(comment.into()));
        if let Some(exp) = expiration {
            node.set("hold_expiration", Value::from(exp));
        }
        let stored = self.store(&node).await;
        self.unlock(vec![node]).await;
        stored
    }

    /// Unlocks the nodes without changing them (errors are logged: the lock goes with the
    /// session anyway).
    pub async fn unlock(&self, nodes: Vec<HeldNode>) {
        for mut node in nodes {
            if let Err(e) = node.lock.release().await {
                tracing::warn!("cannot unlock node {}: {e}", node.id);
            }
        }
    }

    /// Cancels (deletes) a request znode, whatever its state. Returns false if it was
    /// already gone.
    pub async fn cancel(&self, id: &RequestId) -> ZuulResult<bool> {
        match self.client.delete(&paths::request(id), None).await {
            Ok(()) => Ok(true),
            Err(ZkError::NoNode(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Revises `relative_priority` like Zuul: only after taking the request lock
    /// `/nodepool/requests-lock/<id>` non-blockingly, then a version-checked rewrite of
    /// every key read. Returns false (nothing written) if a launcher holds the lock or the
    /// request is gone.
    pub async fn revise_priority(
        &self,
        id: &RequestId,
        relative_priority: i64,
    ) -> ZuulResult<bool> {
        let mut lock = ZkLock::new(&self.client, &paths::request_lock(id), b"");
        if !lock.try_acquire().await? {
            return Ok(false);
        }
        let res = self.rewrite_priority(id, relative_priority).await;
        let released = lock.release().await;
        let written = res?;
        released?;
        Ok(written)
    }

    async fn rewrite_priority(&self, id: &RequestId, relative_priority: i64) -> ZuulResult<bool> {
        let path = paths::request(id);
        let Some((data, stat)) = self.client.get(&path).await? else {
            return Ok(false);
        };
        if NodeRequest::from_json(id, &data)?.is_none() {
            return Ok(false);
        }
        let Ok(mut map) = serde_json::from_slice::<Map<String, Value>>(&data) else {
            return Ok(false);
        };
        map.insert("relative_priority".into(), Value::from(relative_priority));
        let bytes = to_python_json(&Value::Object(map), false);
        self.client.set(&path, &bytes, Some(stat.version)).await?;
        Ok(true)
    }
}
