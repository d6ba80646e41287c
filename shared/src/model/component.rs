//! Component registry records (`/nodepool/components/<kind>/<hostname><seq>`): one
//! ephemeral znode per launcher, builder and provider-pool worker. Zuul reads the pool records
//! to learn which labels are served.
//!
//! Written with sorted keys, like Python's `json.dumps(..., sort_keys=True)`.

use serde_json::{Map, Value};

use super::json::{self, opt_str_value, str_list_value, Reader};
use super::wire_enum::wire_enum;
use super::ModelError;

/// `model_api` written by Nodepool 11.
pub const MODEL_API: i64 = 0;

wire_enum!(
    /// Kind of component; also the directory under `/nodepool/components`.
    ComponentKind, "component kind", {
        /// `launcher`: one per launcher process.
        Launcher = "launcher",
        /// `pool`: one per provider-pool worker.
        Pool = "pool",
        /// `builder`: one per builder process.
        Builder = "builder",
    }
);

wire_enum!(
    /// Component state.
    ComponentState, "component state", {
        /// `initializing`.
        Initializing = "initializing",
        /// `running`.
        Running = "running",
        /// `paused`.
        Paused = "paused",
        /// `stopped`.
        Stopped = "stopped",
    }
);

/// The extra content of a `pool` component.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolInfo {
    /// `id`: the pool worker id (see [`pool_worker_id`]); also used in `declined_by` and
    /// node `launcher`.
    pub id: Option<String>,
    /// `name`: pool name.
    pub name: Option<String>,
    /// `provider_name`.
    pub provider_name: Option<String>,
    /// `supported_labels`.
    pub supported_labels: Vec<String>,
    /// `priority` (default 100).
    pub priority: i64,
    /// `paused`: true while the pool has a paused request handler.
    pub paused: bool,
}

impl Default for PoolInfo {
    fn default() -> Self {
        PoolInfo {
            id: None,
            name: None,
            provider_name: None,
            supported_labels: Vec::new(),
            priority: 100,
            paused: false,
        }
    }
}

/// A component record.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    /// `kind`.
    pub kind: ComponentKind,
    /// `hostname`: `socket.gethostname()`.
    pub hostname: String,
    /// `state`.
    pub state: ComponentState,
    /// `version`, e.g. `11.0.0`.
    pub version: Option<String>,
    /// `model_api` (0).
    pub model_api: i64,
    /// Pool content; `Some` exactly for `pool` components.
    pub pool: Option<PoolInfo>,
    /// Keys this version does not know, written back unchanged.
    pub extra: Map<String, Value>,
}

impl Component {
    /// A new component of `kind` in state `running` (pool components get default
    /// [`PoolInfo`]).
    pub fn new(
        kind: ComponentKind,
        hostname: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        Component {
            kind,
            hostname: hostname.into(),
            state: ComponentState::Running,
            version: Some(version.into()),
            model_api: MODEL_API,
            pool: (kind == ComponentKind::Pool).then(PoolInfo::default),
            extra: Map::new(),
        }
    }

    /// Reads a component znode of the directory `kind`. Empty data → `Ok(None)`.
    pub fn from_json(
        kind: ComponentKind,
        name: &str,
        data: &[u8],
    ) -> Result<Option<Component>, ModelError> {
        let record = || format!("{kind} component {name}");
        match json::parse_object(&record, data)? {
            Some(map) => Self::from_map(kind, name, map).map(Some),
            None => Ok(None),
        }
    }

    /// Reads a component from a parsed JSON object; `kind` is the directory it lives in
    /// (the `kind` key, if present, must agree with it or is kept as read).
    pub fn from_map(
        kind: ComponentKind,
        name: &str,
        map: Map<String, Value>,
    ) -> Result<Component, ModelError> {
        let record = || format!("{kind} component {name}");
        let r = Reader { record: &record };
        let mut c = Component {
            kind,
            hostname: String::new(),
            state: ComponentState::Stopped,
            version: None,
            model_api: MODEL_API,
            pool: None,
            extra: Map::new(),
        };
        let mut pool = PoolInfo::default();
        let is_pool = kind == ComponentKind::Pool;
        for (k, v) in map {
            match k.as_str() {
                "kind" => {
                    c.kind = r.state("kind", v, ComponentKind::from_wire, "a component kind")?
                }
                "hostname" => c.hostname = r.opt_string("hostname", v)?.unwrap_or_default(),
                "state" => {
                    c.state = r.state("state", v, ComponentState::from_wire, "a component state")?
                }
                "version" => c.version = r.opt_string("version", v)?,
                "model_api" => c.model_api = r.opt_i64("model_api", v)?.unwrap_or(0),
                "id" if is_pool => pool.id = r.opt_string("id", v)?,
                "name" if is_pool => pool.name = r.opt_string("name", v)?,
                "provider_name" if is_pool => {
                    pool.provider_name = r.opt_string("provider_name", v)?
                }
                "supported_labels" if is_pool => {
                    pool.supported_labels = r.string_list("supported_labels", v)?
                }
                "priority" if is_pool => pool.priority = r.opt_i64("priority", v)?.unwrap_or(100),
                "paused" if is_pool => pool.paused = r.bool_or("paused", v, false)?,
                _ => {
                    c.extra.insert(k, v);
                }
            }
        }
        if is_pool {
            c.pool = Some(pool);
        }
        Ok(c)
    }

    /// The record as a JSON object (key order irrelevant: [`Component::to_json`] sorts).
    pub fn to_value(&self) -> Value {
        let mut d = Map::new();
        d.insert("hostname".into(), Value::String(self.hostname.clone()));
        d.insert("kind".into(), Value::String(self.kind.as_str().into()));
        d.insert("model_api".into(), Value::from(self.model_api));
        d.insert("state".into(), Value::String(self.state.as_str().into()));
        d.insert("version".into(), opt_str_value(&self.version));
        if let Some(p) = &self.pool {
            d.insert("id".into(), opt_str_value(&p.id));
            d.insert("name".into(), opt_str_value(&p.name));
            d.insert("paused".into(), Value::Bool(p.paused));
            d.insert("priority".into(), Value::from(p.priority));
            d.insert("provider_name".into(), opt_str_value(&p.provider_name));
            d.insert(
                "supported_labels".into(),
                str_list_value(&p.supported_labels),
            );
        }
        for (k, v) in &self.extra {
            if !d.contains_key(k) {
                d.insert(k.clone(), v.clone());
            }
        }
        Value::Object(d)
    }

    /// The znode data as Python writes it: `json.dumps(content, sort_keys=True)`.
    pub fn to_json(&self) -> Vec<u8> {
        json::to_python_json(&self.to_value(), true)
    }
}

/// The pool worker id: `<fqdn>-PoolWorker.<provider>-<pool>-<uuid4 hex>`, new on every
/// worker start.
pub fn pool_worker_id(fqdn: &str, provider: &str, pool: &str) -> String {
    format!(
        "{fqdn}-PoolWorker.{provider}-{pool}-{}",
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pool_component_sorted_bytes() {
        let mut c = Component::new(ComponentKind::Pool, "vm", "11.0.0");
        let p = c.pool.as_mut().unwrap();
        p.id = Some("localhost-PoolWorker.fake-provider-main-x".into());
        p.name = Some("main".into());
        p.provider_name = Some("fake-provider".into());
        p.supported_labels = vec!["fake-label".into()];
        assert_eq!(
            String::from_utf8(c.to_json()).unwrap(),
            r#"{"hostname": "vm", "id": "localhost-PoolWorker.fake-provider-main-x", "kind": "pool", "model_api": 0, "name": "main", "paused": false, "priority": 100, "provider_name": "fake-provider", "state": "running", "supported_labels": ["fake-label"], "version": "11.0.0"}"#
        );
    }

    #[test]
    fn launcher_component_and_defaults() {
        let c = Component::from_json(
            ComponentKind::Launcher,
            "vm0000000001",
            br#"{"hostname": "vm", "kind": "launcher"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.state, ComponentState::Stopped);
        assert!(c.pool.is_none());
        assert_eq!(c.to_value()["model_api"], json!(0));
        let p = Component::from_json(
            ComponentKind::Pool,
            "vm0000000001",
            br#"{"hostname": "vm", "kind": "pool"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.pool.as_ref().unwrap().priority, 100);
    }

    #[test]
    fn worker_id_format() {
        let id = pool_worker_id("host.example.org", "prov", "main");
        let (head, uuid) = id.rsplit_once('-').unwrap();
        assert_eq!(head, "host.example.org-PoolWorker.prov-main");
        assert_eq!(uuid.len(), 32);
    }
}
