//! Minimal simulated Cinder v3: limits (volume quota for boot-from-volume labels) and read/delete
//! of the volumes that boot-from-volume servers create.
//!
//! Catalog URL (type `block-storage`) is `<base>/volume/v3/<project_id>`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::app::{json_response, paginate, ApiError, ApiResult, QueryPairs, Service, Sim};
use super::state::Volume;
use super::util::iso8601;

const SVC: Service = Service::Volume;

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/volume", get(versions))
        .route("/volume/v3", get(version))
        .route("/volume/v3/{project}/limits", get(limits))
        .route("/volume/v3/{project}/volumes", get(list_volumes))
        .route(
            "/volume/v3/{project}/volumes/detail",
            get(list_volumes_detail),
        )
        .route(
            "/volume/v3/{project}/volumes/{id}",
            get(show_volume).delete(delete_volume),
        )
}

fn v3_doc(sim: &Sim) -> Value {
    json!({
        "id": "v3.0",
        "status": "CURRENT",
        "version": "3.70",
        "min_version": "3.0",
        "updated": "2023-08-31T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{}/volume/v3/", sim.base)}],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}]
    })
}

async fn versions(State(sim): State<Arc<Sim>>) -> ApiResult {
    sim.enter_public("volume.versions", SVC).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"versions": [v3_doc(&sim)]}),
    ))
}

async fn version(State(sim): State<Arc<Sim>>) -> ApiResult {
    sim.enter_public("volume.versions", SVC).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"version": v3_doc(&sim)}),
    ))
}

fn check_project(sim: &Sim, project: &str) -> Result<(), ApiError> {
    if project == sim.config.credentials.project_id {
        Ok(())
    } else {
        Err(ApiError::new(
            SVC,
            StatusCode::FORBIDDEN,
            format!("Project {project} is not the token's project"),
        ))
    }
}

async fn limits(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> ApiResult {
    sim.enter(&headers, "volume.limits", SVC).await?;
    check_project(&sim, &project)?;
    let g = sim.lock();
    let (count, gb) = g.world.volume_usage();
    let q = g.knobs.quota;
    Ok(json_response(
        StatusCode::OK,
        json!({"limits": {"rate": [], "absolute": {
            "maxTotalVolumes": q.volumes,
            "maxTotalVolumeGigabytes": q.gigabytes,
            "maxTotalSnapshots": 10,
            "maxTotalBackups": 10,
            "maxTotalBackupGigabytes": 1000,
            "totalVolumesUsed": count,
            "totalGigabytesUsed": gb,
            "totalSnapshotsUsed": 0,
            "totalBackupsUsed": 0,
            "totalBackupGigabytesUsed": 0,
        }}}),
    ))
}

fn volume_json(sim: &Sim, v: &Volume, detail: bool) -> Value {
    let links = json!([{"rel": "self", "href": format!("{}/volume/v3/{}/volumes/{}", sim.base, sim.config.credentials.project_id, v.id)}]);
    if !detail {
        return json!({"id": v.id, "name": v.name, "links": links});
    }
    json!({
        "id": v.id,
        "name": v.name,
        "status": v.status,
        "size": v.size,
        "availability_zone": "nova",
        "bootable": if v.image_id.is_some() { "true" } else { "false" },
        "attachments": v.server_id.as_ref().map(|s| vec![json!({"server_id": s, "attachment_id": v.id, "volume_id": v.id, "device": "/dev/vda"})]).unwrap_or_default(),
        "volume_type": "__DEFAULT__",
        "multiattach": false,
        "encrypted": false,
        "description": null,
        "metadata": {},
        "volume_image_metadata": v.image_id.as_ref().map(|i| json!({"image_id": i})),
        "os-vol-tenant-attr:tenant_id": sim.config.credentials.project_id,
        "user_id": sim.config.credentials.user_id,
        "created_at": iso8601(v.created).trim_end_matches('Z').to_string() + ".000000",
        "updated_at": null,
        "links": links,
    })
}

async fn list_impl(
    sim: &Sim,
    headers: &HeaderMap,
    project: &str,
    q: &QueryPairs,
    detail: bool,
) -> ApiResult {
    sim.enter(headers, "volume.volumes.list", SVC).await?;
    check_project(sim, project)?;
    let g = sim.lock();
    let vols: Vec<&Volume> = g
        .world
        .volumes
        .iter()
        .rev()
        .filter(|v| {
            q.iter().all(|(k, want)| match k.as_str() {
                "status" => v.status == *want,
                "name" => v.name == *want,
                _ => true,
            })
        })
        .collect();
    let ids: Vec<&str> = vols.iter().map(|v| v.id.as_str()).collect();
    let (range, _) = paginate(&ids, q, 1000, 1000, SVC)?;
    let page: Vec<Value> = vols[range]
        .iter()
        .map(|v| volume_json(sim, v, detail))
        .collect();
    Ok(json_response(StatusCode::OK, json!({"volumes": page})))
}

async fn list_volumes(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<QueryPairs>,
) -> ApiResult {
    list_impl(&sim, &headers, &project, &q, false).await
}

async fn list_volumes_detail(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<QueryPairs>,
) -> ApiResult {
    list_impl(&sim, &headers, &project, &q, true).await
}

async fn show_volume(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult {
    sim.enter(&headers, "volume.volumes.get", SVC).await?;
    check_project(&sim, &project)?;
    let g = sim.lock();
    let v = g
        .world
        .volumes
        .iter()
        .find(|v| v.id == id)
        .ok_or_else(|| ApiError::not_found(SVC, format!("Volume {id} could not be found.")))?;
    Ok(json_response(
        StatusCode::OK,
        json!({"volume": volume_json(&sim, v, true)}),
    ))
}

async fn delete_volume(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult {
    sim.enter(&headers, "volume.volumes.delete", SVC).await?;
    check_project(&sim, &project)?;
    let mut g = sim.lock();
    let v = g
        .world
        .volumes
        .iter()
        .find(|v| v.id == id)
        .ok_or_else(|| ApiError::not_found(SVC, format!("Volume {id} could not be found.")))?;
    if v.server_id.is_some() {
        return Err(ApiError::bad_request(
            SVC,
            "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots, awaiting a transfer, or be disassociated from snapshots after volume transfer.",
        ));
    }
    g.world.volumes.retain(|v| v.id != id);
    Ok(StatusCode::ACCEPTED.into_response())
}
