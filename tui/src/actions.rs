//! The operator actions and their ZooKeeper side. The app builds an [`Action`] from the
//! selected row, checks it against the cache ([`precheck`], pure, for an immediate
//! answer) and asks for confirmation; the runtime then runs [`execute`] in a spawned
//! task, which re-reads the record and checks again (the cache may be behind), and
//! reports an [`ActionOutcome`] back over a channel.
//!
//! The ZooKeeper writes are [`nodepool_shared::zk::ops`], the same code the `nodepool`
//! CLI runs: node changes under the node lock (waited for at most 5 s), build and upload
//! changes guarded by the znode version.

use std::time::Duration;

use nodepool_shared::model::{BuildId, BuildState, NodeId, NodeState, UploadState};
use nodepool_shared::zk::cache::UploadKey;
use nodepool_shared::zk::ops::{self, OpError};
use nodepool_shared::zk::{ZkError, ZkStore};

use crate::data::{ConfigInfo, Snapshot};

/// How long a node action waits for the node lock (as `nodepool delete`/`hold`).
pub const NODE_LOCK_TIMEOUT: Duration = ops::NODE_LOCK_TIMEOUT;

/// An operator action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Set the node `deleting` (the launcher then deletes it).
    DeleteNode(NodeId),
    /// Set the node `hold`, with an optional comment.
    HoldNode {
        /// The node.
        id: NodeId,
        /// Stored in the node's `comment` when not empty.
        comment: String,
    },
    /// Release a held node: set it `used` (as Zuul does), so the launcher deletes it.
    UnholdNode(NodeId),
    /// Create `/nodepool/images/<image>/pause`.
    PauseImage(String),
    /// Delete `/nodepool/images/<image>/pause`.
    UnpauseImage(String),
    /// Create `/nodepool/images/<image>/request-build`.
    RequestBuild(String),
    /// Set a build `deleting` (refused while `building`).
    DeleteBuild(String, BuildId),
    /// Set an upload `deleting` (refused while `uploading`).
    DeleteUpload(UploadKey),
}

impl Action {
    /// Short description, e.g. `hold node 0000000042`.
    pub fn describe(&self) -> String {
        match self {
            Action::DeleteNode(id) => format!("delete node {id}"),
            Action::HoldNode { id, .. } => format!("hold node {id}"),
            Action::UnholdNode(id) => format!("release hold of node {id}"),
            Action::PauseImage(i) => format!("pause image {i}"),
            Action::UnpauseImage(i) => format!("unpause image {i}"),
            Action::RequestBuild(i) => format!("request a build of image {i}"),
            Action::DeleteBuild(i, b) => format!("delete build {i}-{b}"),
            Action::DeleteUpload(k) => {
                format!("delete upload {} of {}-{} in {}", k.3, k.0, k.1, k.2)
            }
        }
    }

    /// The id of the record acted on (node id, `image-build`, upload id, image).
    pub fn target(&self) -> String {
        match self {
            Action::DeleteNode(id) | Action::HoldNode { id, .. } | Action::UnholdNode(id) => {
                id.to_string()
            }
            Action::PauseImage(i) | Action::UnpauseImage(i) | Action::RequestBuild(i) => i.clone(),
            Action::DeleteBuild(i, b) => format!("{i}-{b}"),
            Action::DeleteUpload(k) => k.3.to_string(),
        }
    }

    /// What the confirmation dialog explains.
    pub fn consequence(&self) -> &'static str {
        match self {
            Action::DeleteNode(_) => "The node is set to `deleting`; the launcher deletes the instance.",
            Action::HoldNode { .. } => "The node is set to `hold`: kept for you, never reused or cleaned up.",
            Action::UnholdNode(_) => "The node is set to `used` (as Zuul releases holds); the launcher then deletes it.",
            Action::PauseImage(_) => "The builder stops building this image (scheduled and requested builds); uploads of its existing builds go on, and nodes keep booting from them.",
            Action::UnpauseImage(_) => "The builder builds this image again when a build is due or requested.",
            Action::RequestBuild(_) => "The builder builds a new image as soon as it can.",
            Action::DeleteBuild(..) => "The build is set to `deleting`; the builder removes its uploads and files.",
            Action::DeleteUpload(_) => "The upload is set to `deleting`; the builder removes the cloud image (it may re-upload unless paused).",
        }
    }
}

/// The result of an action as shown to the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionOutcome {
    /// The action.
    pub action: Action,
    /// Success text or the error text.
    pub result: Result<String, String>,
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The record is not there (any more).
    #[error("{0} not found")]
    NotFound(String),
    /// The record's state forbids the action.
    #[error("refused: {0}")]
    Refused(String),
    /// Someone else holds the node lock.
    #[error("node {0} is locked by someone else (waited {1:?})")]
    Locked(NodeId, Duration),
    /// ZooKeeper failed.
    #[error(transparent)]
    Zk(#[from] ZkError),
}

impl From<OpError> for ActionError {
    fn from(e: OpError) -> ActionError {
        match e {
            OpError::NodeNotFound(id) => ActionError::NotFound(format!("node {id}")),
            OpError::NodeLocked { id, secs } => ActionError::Locked(id, Duration::from_secs(secs)),
            OpError::BuildNotFound(b) => ActionError::NotFound(format!("build {b}")),
            OpError::UploadNotFound => ActionError::NotFound("upload".into()),
            OpError::BuildInProgress | OpError::UploadInProgress => {
                ActionError::Refused(e.to_string())
            }
            OpError::Refused(text) => ActionError::Refused(text),
            OpError::Zk(z) => ActionError::Zk(z),
        }
    }
}

/// Checks an action against the cached records; `Err` is the refusal text.
pub fn precheck(action: &Action, snap: &Snapshot, cfg: &ConfigInfo) -> Result<(), String> {
    match action {
        Action::DeleteNode(id) | Action::HoldNode { id, .. } | Action::UnholdNode(id) => {
            let n = snap
                .node(id)
                .ok_or_else(|| format!("node {id} not found"))?;
            check_node(action, n.node.state()).map_err(|e| e.to_string())
        }
        Action::DeleteBuild(image, id) => {
            let b = snap
                .build(image, id)
                .ok_or_else(|| format!("build {image}-{id} not found"))?;
            check_build(b.build.state, image, id).map_err(|e| e.to_string())
        }
        Action::DeleteUpload(k) => {
            let u = snap
                .upload(k)
                .ok_or_else(|| format!("upload {} not found", k.3))?;
            check_upload(u.upload.state, k).map_err(|e| e.to_string())
        }
        Action::RequestBuild(image) => {
            if cfg.loaded && cfg.diskimage(image).is_none() {
                return Err(format!(
                    "refused: {image} is not a diskimage of the configuration"
                ));
            }
            Ok(())
        }
        Action::PauseImage(_) | Action::UnpauseImage(_) => Ok(()),
    }
}

fn check_node(action: &Action, state: NodeState) -> Result<(), ActionError> {
    match action {
        Action::UnholdNode(id) if state != NodeState::Hold => Err(ActionError::Refused(format!(
            "node {id} is {state}, not hold"
        ))),
        Action::HoldNode { id, .. } if state == NodeState::Hold => {
            Err(ActionError::Refused(format!("node {id} is already held")))
        }
        Action::HoldNode { id, .. } | Action::DeleteNode(id)
            if matches!(state, NodeState::Deleting | NodeState::Deleted) =>
        {
            Err(ActionError::Refused(format!(
                "node {id} is already {state}"
            )))
        }
        _ => Ok(()),
    }
}

fn check_build(state: BuildState, image: &str, id: &BuildId) -> Result<(), ActionError> {
    match state {
        BuildState::Building => Err(ActionError::Refused(format!(
            "build {image}-{id} is still building"
        ))),
        BuildState::Deleting => Err(ActionError::Refused(format!(
            "build {image}-{id} is already deleting"
        ))),
        _ => Ok(()),
    }
}

fn check_upload(state: UploadState, k: &UploadKey) -> Result<(), ActionError> {
    match state {
        UploadState::Uploading => Err(ActionError::Refused(format!(
            "upload {} is still uploading",
            k.3
        ))),
        UploadState::Deleting => Err(ActionError::Refused(format!(
            "upload {} is already deleting",
            k.3
        ))),
        _ => Ok(()),
    }
}

/// Runs the action against ZooKeeper; `Ok` is the success text.
pub async fn execute(store: &ZkStore, action: &Action) -> Result<String, ActionError> {
    match action {
        Action::DeleteNode(id) => {
            update_node(store, action, id, |n| n.set_state(NodeState::Deleting)).await?;
            Ok(format!("node {id} set to deleting"))
        }
        Action::HoldNode { id, comment } => {
            update_node(store, action, id, |n| {
                n.set_state(NodeState::Hold);
                if !comment.trim().is_empty() {
                    n.comment = Some(comment.trim().to_string());
                }
            })
            .await?;
            Ok(format!("node {id} held"))
        }
        Action::UnholdNode(id) => {
            update_node(store, action, id, |n| n.set_state(NodeState::Used)).await?;
            Ok(format!("hold of node {id} released (now used)"))
        }
        Action::PauseImage(image) => {
            store.pause_image(image).await?;
            Ok(format!("image {image} paused"))
        }
        Action::UnpauseImage(image) => {
            store.unpause_image(image).await?;
            Ok(format!("image {image} unpaused"))
        }
        Action::RequestBuild(image) => {
            store.request_build(image).await?;
            Ok(format!("build of image {image} requested"))
        }
        Action::DeleteBuild(image, id) => {
            ops::mark_build_deleting(store, image, id).await?;
            Ok(format!("build {image}-{id} set to deleting"))
        }
        Action::DeleteUpload(k) => {
            ops::mark_upload_deleting(store, &k.0, &k.1, &k.2, &k.3).await?;
            Ok(format!("upload {} set to deleting", k.3))
        }
    }
}

/// The node change of `nodepool hold`/`delete` ([`ops::update_node`]), after checking
/// the action against the node as re-read under the lock.
async fn update_node(
    store: &ZkStore,
    action: &Action,
    id: &NodeId,
    change: impl FnOnce(&mut nodepool_shared::model::Node),
) -> Result<(), ActionError> {
    ops::update_node(store, id, NODE_LOCK_TIMEOUT, |node| {
        check_node(action, node.state).map_err(|e| match e {
            ActionError::Refused(text) => OpError::Refused(text),
            other => OpError::Refused(other.to_string()),
        })?;
        change(node);
        Ok(())
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals() {
        let id = NodeId::from("0000000001");
        assert!(check_node(&Action::UnholdNode(id.clone()), NodeState::Ready).is_err());
        assert!(check_node(&Action::UnholdNode(id.clone()), NodeState::Hold).is_ok());
        assert!(check_node(&Action::DeleteNode(id.clone()), NodeState::InUse).is_ok());
        assert!(check_node(&Action::DeleteNode(id.clone()), NodeState::Deleting).is_err());
        let b = BuildId::from("abc");
        assert!(check_build(BuildState::Building, "img", &b).is_err());
        assert!(check_build(BuildState::Ready, "img", &b).is_ok());
        assert!(check_build(BuildState::Failed, "img", &b).is_ok());
        let k: UploadKey = ("i".into(), b, "p".into(), "0000000001".into());
        assert!(check_upload(UploadState::Uploading, &k).is_err());
        assert!(check_upload(UploadState::Ready, &k).is_ok());
    }
}
