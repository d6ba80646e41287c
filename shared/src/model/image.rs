//! ImageBuild and ImageUpload records: what the builder has built
//! (`/nodepool/images/<image>/builds/<build-id>`) and uploaded to each provider
//! (`…/providers/<provider>/images/<upload-id>`).

use serde::Serialize;
use serde_json::{Map, Value};

use super::json::{self, f64_value, opt_str_value, Reader};
use super::wire_enum::wire_enum;
use super::{paths, BuildId, ModelError, UploadId};

/// Read default of `username` for builds and uploads.
pub const DEFAULT_IMAGE_USERNAME: &str = "zuul";
/// Read default of `python_path` for builds and uploads.
pub const DEFAULT_IMAGE_PYTHON_PATH: &str = "/usr/bin/python2";

wire_enum!(
    /// State of an image build.
    BuildState, "build state", {
        /// `building`.
        Building = "building",
        /// `ready`.
        Ready = "ready",
        /// `deleting`.
        Deleting = "deleting",
        /// `failed`.
        Failed = "failed",
    }
);

wire_enum!(
    /// State of an image upload.
    UploadState, "upload state", {
        /// `uploading`.
        Uploading = "uploading",
        /// `ready`.
        Ready = "ready",
        /// `deleting`.
        Deleting = "deleting",
        /// `failed`.
        Failed = "failed",
    }
);

/// An image build record.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageBuild {
    /// Image name (from the path; not stored in the JSON).
    pub image: String,
    /// Build id (from the path; not stored in the JSON).
    pub id: BuildId,
    /// `state`.
    pub state: BuildState,
    /// `state_time`: float epoch seconds (0.0 if unset).
    pub state_time: f64,
    /// `builder`: hostname (fqdn); written only if set.
    pub builder: Option<String>,
    /// `builder_id`: uuid from `builder_id.txt`; written only if set.
    pub builder_id: Option<String>,
    /// `formats`: on the wire a comma-joined sorted string, omitted when empty.
    pub formats: Vec<String>,
    /// `username` (read default `zuul`).
    pub username: Option<String>,
    /// `python_path` (read default `/usr/bin/python2`).
    pub python_path: Option<String>,
    /// `shell_type`.
    pub shell_type: Option<String>,
    /// Keys this version does not know, written back unchanged.
    pub extra: Map<String, Value>,
}

impl ImageBuild {
    /// A new build in state `building`, stamped with the current time.
    pub fn new(image: impl Into<String>, id: BuildId) -> Self {
        ImageBuild {
            image: image.into(),
            id,
            state: BuildState::Building,
            state_time: json::now_epoch(),
            builder: None,
            builder_id: None,
            formats: Vec::new(),
            username: None,
            python_path: None,
            shell_type: None,
            extra: Map::new(),
        }
    }

    /// Sets the state and stamps `state_time`.
    pub fn set_state(&mut self, state: BuildState) {
        self.state = state;
        self.state_time = json::now_epoch();
    }

    /// The formats, sorted (as Python's `formats` property returns them).
    pub fn sorted_formats(&self) -> Vec<String> {
        let mut f = self.formats.clone();
        f.sort();
        f
    }

    /// The ZooKeeper path of this build.
    pub fn path(&self) -> String {
        paths::build(&self.image, &self.id)
    }

    /// Reads a build znode. Empty data → `Ok(None)`.
    pub fn from_json(
        image: &str,
        id: &BuildId,
        data: &[u8],
    ) -> Result<Option<ImageBuild>, ModelError> {
        let record = || format!("image build {image}/{id}");
        match json::parse_object(&record, data)? {
            Some(map) => Self::from_map(image, id, map).map(Some),
            None => Ok(None),
        }
    }

    /// Reads a build from an already-parsed JSON object.
    pub fn from_map(
        image: &str,
        id: &BuildId,
        map: Map<String, Value>,
    ) -> Result<ImageBuild, ModelError> {
        let record = || format!("image build {image}/{id}");
        let r = Reader { record: &record };
        let mut b = ImageBuild::new(image, id.clone());
        b.state_time = 0.0;
        b.username = Some(DEFAULT_IMAGE_USERNAME.into());
        b.python_path = Some(DEFAULT_IMAGE_PYTHON_PATH.into());
        let mut state = None;
        for (k, v) in map {
            match k.as_str() {
                "state" => {
                    state = Some(r.state("state", v, BuildState::from_wire, "a build state")?)
                }
                "state_time" => b.state_time = r.opt_f64("state_time", v)?.unwrap_or(0.0),
                "builder" => b.builder = r.opt_string("builder", v)?,
                "builder_id" => b.builder_id = r.opt_string("builder_id", v)?,
                "formats" => {
                    b.formats = r
                        .opt_string("formats", v)?
                        .filter(|s| !s.is_empty())
                        .map(|s| s.split(',').map(str::to_string).collect())
                        .unwrap_or_default()
                }
                "username" => b.username = r.opt_string("username", v)?,
                "python_path" => b.python_path = r.opt_string("python_path", v)?,
                "shell_type" => b.shell_type = r.opt_string("shell_type", v)?,
                _ => {
                    b.extra.insert(k, v);
                }
            }
        }
        b.state = state.ok_or_else(|| r.missing("state"))?;
        Ok(b)
    }

    /// The record as a JSON object in Python's `ImageBuild.toDict` order, then `extra`.
    pub fn to_value(&self) -> Value {
        let mut d = Map::with_capacity(8 + self.extra.len());
        d.insert("state".into(), Value::String(self.state.as_str().into()));
        d.insert("state_time".into(), f64_value(self.state_time));
        if let Some(b) = &self.builder {
            d.insert("builder".into(), Value::String(b.clone()));
        }
        if let Some(b) = &self.builder_id {
            d.insert("builder_id".into(), Value::String(b.clone()));
        }
        if !self.formats.is_empty() {
            d.insert(
                "formats".into(),
                Value::String(self.sorted_formats().join(",")),
            );
        }
        d.insert("username".into(), opt_str_value(&self.username));
        d.insert("python_path".into(), opt_str_value(&self.python_path));
        d.insert("shell_type".into(), opt_str_value(&self.shell_type));
        for (k, v) in &self.extra {
            if !d.contains_key(k) {
                d.insert(k.clone(), v.clone());
            }
        }
        Value::Object(d)
    }

    /// The znode data, byte-for-byte as Python writes it.
    pub fn to_json(&self) -> Vec<u8> {
        json::to_python_json(&self.to_value(), false)
    }
}

impl Serialize for ImageBuild {
    /// Serialises the wire form, same as [`ImageBuild::to_value`].
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

/// An image upload record.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageUpload {
    /// Image name (from the path).
    pub image: String,
    /// Build id (from the path).
    pub build_id: BuildId,
    /// Provider name (from the path).
    pub provider: String,
    /// Upload id (from the path). Empty until first stored.
    pub id: UploadId,
    /// `state`.
    pub state: UploadState,
    /// `state_time`: float epoch seconds (0.0 if unset).
    pub state_time: f64,
    /// `external_id`: cloud image id.
    pub external_id: Option<String>,
    /// `external_name`: cloud image name.
    pub external_name: Option<String>,
    /// `format`: image format uploaded.
    pub format: Option<String>,
    /// `username` (read default `zuul`).
    pub username: Option<String>,
    /// `python_path` (read default `/usr/bin/python2`).
    pub python_path: Option<String>,
    /// `shell_type`.
    pub shell_type: Option<String>,
    /// Keys this version does not know, written back unchanged.
    pub extra: Map<String, Value>,
}

impl ImageUpload {
    /// A new upload in state `uploading`, stamped with the current time.
    pub fn new(image: impl Into<String>, build_id: BuildId, provider: impl Into<String>) -> Self {
        ImageUpload {
            image: image.into(),
            build_id,
            provider: provider.into(),
            id: UploadId::default(),
            state: UploadState::Uploading,
            state_time: json::now_epoch(),
            external_id: None,
            external_name: None,
            format: None,
            username: None,
            python_path: None,
            shell_type: None,
            extra: Map::new(),
        }
    }

    /// Sets the state and stamps `state_time`.
    pub fn set_state(&mut self, state: UploadState) {
        self.state = state;
        self.state_time = json::now_epoch();
    }

    /// The ZooKeeper path of this upload (what a node's `image_id` holds).
    pub fn path(&self) -> String {
        paths::upload(&self.image, &self.build_id, &self.provider, &self.id)
    }

    /// Reads an upload znode. Empty data → `Ok(None)`.
    pub fn from_json(
        image: &str,
        build_id: &BuildId,
        provider: &str,
        id: &UploadId,
        data: &[u8],
    ) -> Result<Option<ImageUpload>, ModelError> {
        let record = || format!("image upload {image}/{build_id}/{provider}/{id}");
        match json::parse_object(&record, data)? {
            Some(map) => Self::from_map(image, build_id, provider, id, map).map(Some),
            None => Ok(None),
        }
    }

    /// Reads an upload from an already-parsed JSON object.
    pub fn from_map(
        image: &str,
        build_id: &BuildId,
        provider: &str,
        id: &UploadId,
        map: Map<String, Value>,
    ) -> Result<ImageUpload, ModelError> {
        let record = || format!("image upload {image}/{build_id}/{provider}/{id}");
        let r = Reader { record: &record };
        let mut u = ImageUpload::new(image, build_id.clone(), provider);
        u.id = id.clone();
        u.state_time = 0.0;
        u.username = Some(DEFAULT_IMAGE_USERNAME.into());
        u.python_path = Some(DEFAULT_IMAGE_PYTHON_PATH.into());
        let mut state = None;
        for (k, v) in map {
            match k.as_str() {
                "state" => {
                    state = Some(r.state("state", v, UploadState::from_wire, "an upload state")?)
                }
                "state_time" => u.state_time = r.opt_f64("state_time", v)?.unwrap_or(0.0),
                "external_id" => u.external_id = r.opt_string("external_id", v)?,
                "external_name" => u.external_name = r.opt_string("external_name", v)?,
                "format" => u.format = r.opt_string("format", v)?,
                "username" => u.username = r.opt_string("username", v)?,
                "python_path" => u.python_path = r.opt_string("python_path", v)?,
                "shell_type" => u.shell_type = r.opt_string("shell_type", v)?,
                _ => {
                    u.extra.insert(k, v);
                }
            }
        }
        u.state = state.ok_or_else(|| r.missing("state"))?;
        Ok(u)
    }

    /// The record as a JSON object in Python's `ImageUpload.toDict` order, then `extra`.
    pub fn to_value(&self) -> Value {
        let mut d = Map::with_capacity(8 + self.extra.len());
        d.insert("state".into(), Value::String(self.state.as_str().into()));
        d.insert("state_time".into(), f64_value(self.state_time));
        d.insert("external_id".into(), opt_str_value(&self.external_id));
        d.insert("external_name".into(), opt_str_value(&self.external_name));
        d.insert("format".into(), opt_str_value(&self.format));
        d.insert("username".into(), opt_str_value(&self.username));
        d.insert("python_path".into(), opt_str_value(&self.python_path));
        d.insert("shell_type".into(), opt_str_value(&self.shell_type));
        for (k, v) in &self.extra {
            if !d.contains_key(k) {
                d.insert(k.clone(), v.clone());
            }
        }
        Value::Object(d)
    }

    /// The znode data, byte-for-byte as Python writes it.
    pub fn to_json(&self) -> Vec<u8> {
        json::to_python_json(&self.to_value(), false)
    }
}

impl Serialize for ImageUpload {
    /// Serialises the wire form, same as [`ImageUpload::to_value`].
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn build_formats_and_optional_keys() {
        let id = BuildId::from("0123456789abcdef0123456789abcdef");
        let data =
            br#"{"state": "ready", "state_time": 10.5, "formats": "raw,qcow2", "future": 1}"#;
        let b = ImageBuild::from_json("ubuntu", &id, data).unwrap().unwrap();
        assert_eq!(b.formats, ["raw", "qcow2"]);
        assert_eq!(b.username.as_deref(), Some("zuul"));
        assert_eq!(b.python_path.as_deref(), Some("/usr/bin/python2"));
        let v = b.to_value();
        assert_eq!(
            v,
            json!({"state": "ready", "state_time": 10.5, "formats": "qcow2,raw", "username": "zuul",
                   "python_path": "/usr/bin/python2", "shell_type": null, "future": 1})
        );
        assert!(v.get("builder").is_none());
        assert_eq!(
            String::from_utf8(b.to_json()).unwrap(),
            r#"{"state": "ready", "state_time": 10.5, "formats": "qcow2,raw", "username": "zuul", "python_path": "/usr/bin/python2", "shell_type": null, "future": 1}"#
        );
        let mut b2 = b.clone();
        b2.formats.clear();
        b2.builder = Some("host.example".into());
        b2.builder_id = Some("uuid".into());
        let keys: Vec<String> = b2.to_value().as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "state",
                "state_time",
                "builder",
                "builder_id",
                "username",
                "python_path",
                "shell_type",
                "future"
            ]
        );
        assert_eq!(
            b.path(),
            "/nodepool/images/ubuntu/builds/0123456789abcdef0123456789abcdef"
        );
        let empty =
            ImageBuild::from_json("ubuntu", &id, br#"{"state": "building", "formats": ""}"#)
                .unwrap()
                .unwrap();
        assert!(empty.formats.is_empty());
    }

    #[test]
    fn upload_round_trip() {
        let bid = BuildId::from("0123456789abcdef0123456789abcdef");
        let uid = UploadId::from("0000000001");
        let data = json!({"state": "ready", "state_time": 1.25, "external_id": "img-1",
                          "external_name": "ubuntu-123", "format": "qcow2", "username": null,
                          "python_path": "auto", "shell_type": null});
        let u = ImageUpload::from_json("ubuntu", &bid, "prov", &uid, data.to_string().as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(u.username, None);
        assert_eq!(u.to_value(), data);
        assert_eq!(
            u.path(),
            "/nodepool/images/ubuntu/builds/0123456789abcdef0123456789abcdef/providers/prov/images/0000000001"
        );
        let e = ImageUpload::from_json("ubuntu", &bid, "prov", &uid, br#"{"state": "building"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("image upload ubuntu/"), "{e}");
        for s in UploadState::ALL {
            assert_eq!(UploadState::from_wire(s.as_str()), Some(s));
        }
    }
}
