//! Simulated Glance v2: images with custom properties, streamed data upload, list/filters.
//!
//! Catalog URL is `<base>/image`. Upload bodies are streamed: bytes are counted and hashed
//! (MD5 `checksum`, SHA-512 `os_hash_value`) and only written to disk if `image_store_dir` is set.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;

use super::app::{
    json_response, paginate, parse_body, ApiError, ApiResult, QueryPairs, Service, Sim,
};
use super::state::Image;
use super::util::{hex, iso8601, new_id, now_secs};

const SVC: Service = Service::Image;

/// Top-level image keys that are not custom properties.
const CORE_KEYS: &[&str] = &[
    "id",
    "name",
    "status",
    "visibility",
    "protected",
    "os_hidden",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "owner",
    "tags",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "locations",
    "direct_url",
];

pub fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/image", get(versions))
        .route("/image/versions", get(versions))
        .route("/image/v2", get(versions))
        .route("/image/v2/images", get(list_images).post(create_image))
        .route(
            "/image/v2/images/{id}",
            get(show_image).patch(update_image).delete(delete_image),
        )
        .route("/image/v2/images/{id}/file", get(download).put(upload))
        .route("/image/v2/schemas/image", get(schema_image))
        .route("/image/v2/schemas/images", get(schema_images))
}

async fn versions(State(sim): State<Arc<Sim>>) -> ApiResult {
    sim.enter_public("image.versions", SVC).await?;
    let v = |id: &str, status: &str| json!({"id": id, "status": status, "links": [{"rel": "self", "href": format!("{}/image/v2/", sim.base)}]});
    Ok(json_response(
        StatusCode::OK,
        json!({"versions": [v("v2.16", "CURRENT"), v("v2.15", "SUPPORTED"), v("v2.0", "SUPPORTED")]}),
    ))
}

fn image_json(sim: &Sim, i: &Image) -> Value {
    let mut v = json!({
        "id": i.id,
        "name": i.name,
        "status": i.status,
        "visibility": i.visibility,
        "protected": i.protected,
        "os_hidden": i.os_hidden,
        "checksum": i.checksum,
        "os_hash_algo": i.os_hash_value.as_ref().map(|_| "sha512"),
        "os_hash_value": i.os_hash_value,
        "size": i.size,
        "virtual_size": null,
        "disk_format": i.disk_format,
        "container_format": i.container_format,
        "min_disk": i.min_disk,
        "min_ram": i.min_ram,
        "owner": sim.config.credentials.project_id,
        "tags": i.tags,
        "created_at": iso8601(i.created),
        "updated_at": iso8601(i.updated),
        "self": format!("/v2/images/{}", i.id),
        "file": format!("/v2/images/{}/file", i.id),
        "schema": "/v2/schemas/image",
    });
    let o = v.as_object_mut().expect("object literal");
    for (k, val) in &i.properties {
        o.insert(k.clone(), val.clone());
    }
    v
}

fn find<'a>(images: &'a [Image], id: &str) -> Result<&'a Image, ApiError> {
    images
        .iter()
        .find(|i| i.id == id)
        .ok_or_else(|| ApiError::not_found(SVC, format!("No image found with ID {id}")))
}

/// Glance's checks of an image create: known disk and container formats, a valid
/// visibility (returned, default `shared`), no read-only attribute.
fn check_create(obj: &Map<String, Value>) -> Result<String, ApiError> {
    let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    const DISK: &[&str] = &[
        "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
    ];
    const CONTAINER: &[&str] = &[
        "ami",
        "ari",
        "aki",
        "bare",
        "ovf",
        "ova",
        "docker",
        "compressed",
    ];
    if let Some(d) = s("disk_format") {
        if !DISK.contains(&d.as_str()) {
            return Err(ApiError::bad_request(
                SVC,
                format!("Invalid disk format '{d}' for image."),
            ));
        }
    }
    if let Some(c) = s("container_format") {
        if !CONTAINER.contains(&c.as_str()) {
            return Err(ApiError::bad_request(
                SVC,
                format!("Invalid container format '{c}' for image."),
            ));
        }
    }
    let visibility = s("visibility").unwrap_or_else(|| "shared".into());
    if !["public", "private", "shared", "community"].contains(&visibility.as_str()) {
        return Err(ApiError::bad_request(
            SVC,
            format!("Invalid visibility value: {visibility}"),
        ));
    }
    for k in [
        "status",
        "checksum",
        "size",
        "os_hash_value",
        "self",
        "file",
        "schema",
        "created_at",
        "updated_at",
    ] {
        if obj.contains_key(k) {
            return Err(ApiError::new(
                SVC,
                StatusCode::FORBIDDEN,
                format!("Attribute '{k}' is read-only."),
            ));
        }
    }
    Ok(visibility)
}

async fn create_image(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    sim.enter(&headers, "image.images.create", SVC).await?;
    let body = parse_body(SVC, &body)?;
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request(SVC, "Image create body must be a JSON object"))?;
    let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    let visibility = check_create(obj)?;
    let mut properties = Map::new();
    for (k, v) in obj {
        if !CORE_KEYS.contains(&k.as_str()) {
            properties.insert(k.clone(), v.clone());
        }
    }
    let now = now_secs();
    let id = s("id").unwrap_or_else(new_id);
    let img = Image {
        id: id.clone(),
        name: s("name"),
        status: "queued".into(),
        disk_format: s("disk_format"),
        container_format: s("container_format"),
        visibility,
        protected: obj
            .get("protected")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        os_hidden: obj
            .get("os_hidden")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        min_disk: obj.get("min_disk").and_then(Value::as_u64).unwrap_or(0),
        min_ram: obj.get("min_ram").and_then(Value::as_u64).unwrap_or(0),
        size: None,
        checksum: None,
        os_hash_value: None,
        tags: obj
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        properties,
        created: now,
        updated: now,
        stored_path: None,
    };
    let mut g = sim.lock();
    if g.world.images.iter().any(|i| i.id == id) {
        return Err(ApiError::new(
            SVC,
            StatusCode::CONFLICT,
            format!("Image with identifier {id} already exists!"),
        ));
    }
    let v = image_json(&sim, &img);
    g.world.images.push(img);
    let mut r = json_response(StatusCode::CREATED, v);
    if let Ok(h) = format!("{}/image/v2/images/{id}", sim.base).parse() {
        r.headers_mut().insert("Location", h);
    }
    Ok(r)
}

async fn list_images(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(q): Query<QueryPairs>,
) -> ApiResult {
    sim.enter(&headers, "image.images.list", SVC).await?;
    let g = sim.lock();
    const NON_FILTERS: &[&str] = &[
        "limit",
        "marker",
        "sort_key",
        "sort_dir",
        "sort",
        "member_status",
    ];
    let list: Vec<&Image> = g
        .world
        .images
        .iter()
        .rev()
        .filter(|i| i.status != "deleted")
        .filter(|i| {
            q.iter()
                .filter(|(k, _)| !NON_FILTERS.contains(&k.as_str()))
                .all(|(k, want)| match k.as_str() {
                    "name" => i.name.as_deref() == Some(want.as_str()),
                    "status" => i.status == *want,
                    "visibility" => want == "all" || i.visibility == *want,
                    "disk_format" => i.disk_format.as_deref() == Some(want.as_str()),
                    "container_format" => i.container_format.as_deref() == Some(want.as_str()),
                    "owner" => sim.config.credentials.project_id == *want,
                    "tag" => i.tags.iter().any(|t| t == want),
                    "id" => {
                        i.id == *want
                            || want
                                .strip_prefix("in:")
                                .is_some_and(|l| l.split(',').any(|x| x == i.id))
                    }
                    "os_hidden" => i.os_hidden.to_string() == *want,
                    "protected" => i.protected.to_string() == *want,
                    prop => match i.properties.get(prop) {
                        Some(Value::String(s)) => s == want,
                        Some(other) => {
                            *other == serde_json::from_str::<Value>(want).unwrap_or(Value::Null)
                        }
                        None => false,
                    },
                })
        })
        .collect();
    let ids: Vec<&str> = list.iter().map(|i| i.id.as_str()).collect();
    let (range, full) = paginate(&ids, &q, 25, 1000, SVC)?;
    let page: Vec<Value> = list[range.clone()]
        .iter()
        .map(|i| image_json(&sim, i))
        .collect();
    let mut doc = json!({"images": page, "first": "/v2/images", "schema": "/v2/schemas/images"});
    if full {
        if let Some(last) = ids[range].last() {
            let mut next = "/v2/images?".to_string();
            for (k, v) in q.iter().filter(|(k, _)| k != "marker") {
                next.push_str(&format!(
                    "{}={}&",
                    super::nova::urlencode(k),
                    super::nova::urlencode(v)
                ));
            }
            next.push_str(&format!("marker={last}"));
            doc["next"] = json!(next);
        }
    }
    Ok(json_response(StatusCode::OK, doc))
}

async fn show_image(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    sim.enter(&headers, "image.images.get", SVC).await?;
    let g = sim.lock();
    let i = find(&g.world.images, &id)?;
    Ok(json_response(StatusCode::OK, image_json(&sim, i)))
}

/// JSON-patch (`application/openstack-images-v2.1-json-patch`) with add/replace/remove.
async fn update_image(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    sim.enter(&headers, "image.images.update", SVC).await?;
    let ops = parse_body(SVC, &body)?;
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::bad_request(SVC, "Image update body must be a JSON-patch array"))?
        .clone();
    let mut g = sim.lock();
    let img = g
        .world
        .images
        .iter_mut()
        .find(|i| i.id == id)
        .ok_or_else(|| ApiError::not_found(SVC, format!("No image found with ID {id}")))?;
    for op in &ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        let key = path.trim_start_matches('/').to_string();
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        match (kind, key.as_str()) {
            ("add" | "replace", "name") => img.name = value.as_str().map(str::to_string),
            ("add" | "replace", "visibility") => {
                img.visibility = value.as_str().unwrap_or("shared").to_string()
            }
            ("add" | "replace", "protected") => img.protected = value.as_bool().unwrap_or(false),
            ("add" | "replace", "os_hidden") => img.os_hidden = value.as_bool().unwrap_or(false),
            ("add" | "replace", "min_disk") => img.min_disk = value.as_u64().unwrap_or(0),
            ("add" | "replace", "min_ram") => img.min_ram = value.as_u64().unwrap_or(0),
            ("add" | "replace", "disk_format") => {
                img.disk_format = value.as_str().map(str::to_string)
            }
            ("add" | "replace", "container_format") => {
                img.container_format = value.as_str().map(str::to_string)
            }
            ("add" | "replace", "tags") => {
                img.tags = value
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            }
            ("add" | "replace", k) if !CORE_KEYS.contains(&k) => {
                img.properties.insert(k.to_string(), value);
            }
            ("remove", k) if !CORE_KEYS.contains(&k) => {
                if img.properties.remove(k).is_none() {
                    return Err(ApiError::new(
                        SVC,
                        StatusCode::CONFLICT,
                        format!("Property {k} does not exist."),
                    ));
                }
            }
            _ => {
                return Err(ApiError::new(
                    SVC,
                    StatusCode::FORBIDDEN,
                    format!("Unsupported image update: op {kind:?} on {path:?}"),
                ))
            }
        }
    }
    img.updated = now_secs();
    let v = image_json(&sim, img);
    Ok(json_response(StatusCode::OK, v))
}

async fn delete_image(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    sim.enter(&headers, "image.images.delete", SVC).await?;
    let removed = {
        let mut g = sim.lock();
        let pos = g
            .world
            .images
            .iter()
            .position(|i| i.id == id)
            .ok_or_else(|| ApiError::not_found(SVC, format!("No image found with ID {id}")))?;
        if g.world.images[pos].protected {
            return Err(ApiError::new(
                SVC,
                StatusCode::FORBIDDEN,
                format!("Image {id} is protected and cannot be deleted."),
            ));
        }
        g.world.images.remove(pos)
    };
    if let Some(p) = removed.stored_path {
        let _ = tokio::fs::remove_file(p).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Streams the request body: counts, hashes, optionally writes to `image_store_dir`.
async fn upload(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    if let Err(e) = start_upload(&sim, &headers, &id).await {
        // Read (and discard) the data before refusing it: a reply while the client is still
        // sending makes it see a broken pipe instead of the error.
        drain(body).await;
        return Err(e);
    }
    let delay = sim.lock().knobs.image_upload_delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let result = receive(&sim, &id, body).await;
    let mut g = sim.lock();
    let Some(img) = g.world.images.iter_mut().find(|i| i.id == id) else {
        // Deleted while uploading.
        if let Ok((_, _, _, Some(p))) = result {
            let _ = std::fs::remove_file(p);
        }
        return Err(ApiError::new(
            SVC,
            StatusCode::GONE,
            format!("Image {id} was deleted during upload"),
        ));
    };
    match result {
        Ok((size, md5, sha, path)) => {
            img.size = Some(size);
            img.checksum = md5;
            img.os_hash_value = sha;
            img.stored_path = path;
            img.status = "active".into();
            img.updated = now_secs();
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => {
            img.status = "queued".into();
            Err(e)
        }
    }
}

/// Checks an upload may start and marks the image `saving`.
async fn start_upload(sim: &Sim, headers: &HeaderMap, id: &str) -> Result<(), ApiError> {
    sim.enter(headers, "image.images.upload", SVC).await?;
    let mut g = sim.lock();
    let img = g
        .world
        .images
        .iter_mut()
        .find(|i| i.id == id)
        .ok_or_else(|| ApiError::not_found(SVC, format!("No image found with ID {id}")))?;
    if img.status != "queued" {
        return Err(ApiError::new(
            SVC,
            StatusCode::CONFLICT,
            format!(
                "Image status transition from {} to saving is not allowed",
                img.status
            ),
        ));
    }
    img.status = "saving".into();
    img.updated = now_secs();
    Ok(())
}

async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    while let Some(Ok(_)) = stream.next().await {}
}

type Received = (
    u64,
    Option<String>,
    Option<String>,
    Option<std::path::PathBuf>,
);

async fn receive(sim: &Sim, id: &str, body: Body) -> Result<Received, ApiError> {
    use md5::Md5;
    use sha2::{Digest, Sha512};
    let mut file = None;
    let mut path = None;
    if let Some(dir) = &sim.config.image_store_dir {
        let p = dir.join(id);
        let f = tokio::fs::File::create(&p).await.map_err(|e| {
            ApiError::new(
                SVC,
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Cannot store image data at {}: {e}", p.display()),
            )
        })?;
        file = Some(tokio::io::BufWriter::new(f));
        path = Some(p);
    }
    let hash = sim.config.hash_uploads;
    let mut md5 = Md5::new();
    let mut sha = Sha512::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                SVC,
                format!("Error reading image data from the request: {e}"),
            )
        })?;
        size += chunk.len() as u64;
        if hash {
            md5.update(&chunk);
            sha.update(&chunk);
        }
        if let Some(f) = file.as_mut() {
            f.write_all(&chunk).await.map_err(|e| {
                ApiError::new(
                    SVC,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Cannot write image data: {e}"),
                )
            })?;
        }
    }
    if let Some(mut f) = file {
        f.flush().await.map_err(|e| {
            ApiError::new(
                SVC,
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Cannot write image data: {e}"),
            )
        })?;
    }
    if !hash {
        return Ok((size, None, None, path));
    }
    Ok((
        size,
        Some(hex(&md5.finalize())),
        Some(hex(&sha.finalize())),
        path,
    ))
}

async fn download(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    sim.enter(&headers, "image.images.download", SVC).await?;
    let path = {
        let g = sim.lock();
        find(&g.world.images, &id)?.stored_path.clone()
    };
    match path {
        Some(p) => {
            let f = tokio::fs::File::open(&p).await.map_err(|e| {
                ApiError::new(
                    SVC,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Cannot read image data: {e}"),
                )
            })?;
            let stream = futures::stream::unfold(f, |mut f| async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 64 * 1024];
                match f.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
                    }
                    Err(e) => Some((Err(e), f)),
                }
            });
            Ok((
                StatusCode::OK,
                [("content-type", "application/octet-stream")],
                Body::from_stream(stream),
            )
                .into_response())
        }
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

async fn schema_image(State(sim): State<Arc<Sim>>) -> ApiResult {
    sim.enter_public("image.schemas", SVC).await?;
    Ok(json_response(StatusCode::OK, image_schema()))
}

async fn schema_images(State(sim): State<Arc<Sim>>) -> ApiResult {
    sim.enter_public("image.schemas", SVC).await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"name": "images", "properties": {"images": {"type": "array", "items": image_schema()}, "schema": {"type": "string"}, "first": {"type": "string"}, "next": {"type": "string"}}}),
    ))
}

fn image_schema() -> Value {
    let s = |t: &str| json!({"type": t});
    json!({
        "name": "image",
        "additionalProperties": {"type": "string"},
        "properties": {
            "id": s("string"), "name": {"type": ["null", "string"]}, "status": s("string"),
            "visibility": s("string"), "protected": s("boolean"), "os_hidden": s("boolean"),
            "checksum": {"type": ["null", "string"]}, "os_hash_algo": {"type": ["null", "string"]},
            "os_hash_value": {"type": ["null", "string"]}, "size": {"type": ["null", "integer"]},
            "virtual_size": {"type": ["null", "integer"]}, "disk_format": {"type": ["null", "string"]},
            "container_format": {"type": ["null", "string"]}, "min_disk": s("integer"),
            "min_ram": s("integer"), "owner": {"type": ["null", "string"]}, "tags": {"type": "array"},
            "created_at": s("string"), "updated_at": s("string"), "self": s("string"),
            "file": s("string"), "schema": s("string")
        },
        "links": [{"rel": "self", "href": "{self}"}, {"rel": "enclosure", "href": "{file}"}, {"rel": "describedby", "href": "{schema}"}]
    })
}
