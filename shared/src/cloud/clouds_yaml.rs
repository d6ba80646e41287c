//! `clouds.yaml` loading, as openstacksdk does it for Nodepool: the first existing file
//! of `$OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`, `~/.config/openstack/clouds.yaml`,
//! `/etc/openstack/clouds.yaml`; a provider names its entry with `cloud:` and may
//! override the region with `region-name`.
//!
//! Supported: auth types `password` (also `v3password`) and `v3applicationcredential`,
//! `region_name`/`regions`, `interface`, `cacert`, `verify`, `image_format` (the
//! builder's upload format, default `qcow2`), `compute_api_version`, and what decides
//! which server address a node gets ([`AddressPolicy`]): `force_ipv4`, `prefer_ipv6`,
//! `private`, `use_external_network`, `use_internal_network`, `networks` (and the older
//! `external_network`/`internal_network`), the file's `client:` section (`force_ipv4`,
//! `broken-ipv6`, `prefer_ipv6`) and the `OS_FORCE_IPV4`/`OS_PREFER_IPV6` environment
//! variables. Other keys are ignored. Secrets are held in [`Secret`], which never
//! prints its value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_saphyr::MessageFormatter;

use super::addresses::{AddressPolicy, NetworkRole};

/// Upload format when the cloud entry has no `image_format` (openstacksdk's default).
pub const DEFAULT_IMAGE_FORMAT: &str = "qcow2";
/// Endpoint interface when the cloud entry has none.
pub const DEFAULT_INTERFACE: &str = "public";

/// A password, application-credential secret or token: redacted in `Debug`/`Display`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why clouds.yaml could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CloudsYamlError {
    #[error("no clouds.yaml found (searched: {})", list_paths(.searched))]
    NotFound { searched: Vec<PathBuf> },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{}: cloud `{cloud}`: {message}", path.display())]
    Invalid {
        path: PathBuf,
        cloud: String,
        message: String,
    },
    #[error("{}: no cloud named `{cloud}` (known: {})", path.display(), known.join(", "))]
    UnknownCloud {
        path: PathBuf,
        cloud: String,
        known: Vec<String>,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A Keystone domain reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Domain {
    Id(String),
    Name(String),
}

impl Default for Domain {
    /// Keystone's default domain (id `default`).
    fn default() -> Self {
        Domain::Id("default".to_string())
    }
}

/// `auth_type: password`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordAuth {
    pub auth_url: String,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub user_domain: Domain,
    pub password: Secret,
    pub project_id: Option<String>,
    pub project_name: Option<String>,
    pub project_domain: Domain,
}

/// `auth_type: v3applicationcredential`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppCredentialAuth {
    pub auth_url: String,
    /// `application_credential_id` (or the name plus a user).
    pub id: Option<String>,
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub user_domain: Domain,
    pub secret: Secret,
}

/// How to obtain a Keystone token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthConfig {
    Password(PasswordAuth),
    ApplicationCredential(AppCredentialAuth),
}

impl AuthConfig {
    pub fn auth_url(&self) -> &str {
        match self {
            AuthConfig::Password(p) => &p.auth_url,
            AuthConfig::ApplicationCredential(a) => &a.auth_url,
        }
    }
}

/// One `clouds.<name>` entry, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudConfig {
    /// The entry's name.
    pub name: String,
    pub auth: AuthConfig,
    /// `region_name`, else the first of `regions`.
    pub region_name: Option<String>,
    /// `regions` (names only).
    pub regions: Vec<String>,
    /// `interface` (`public`).
    pub interface: String,
    /// `cacert`: extra CA bundle (PEM).
    pub cacert: Option<PathBuf>,
    /// `verify` (true); false accepts any TLS certificate.
    pub verify: bool,
    /// `image_format`.
    pub image_format: Option<String>,
    /// `compute_api_version`: Nova microversion to request instead of the default.
    pub compute_api_version: Option<String>,
    /// Which server address is which (`local_ipv6` is the driver's to fill in).
    pub addresses: AddressPolicy,
}

impl CloudConfig {
    /// The builder's upload format: `image_format`, default `qcow2`.
    pub fn image_format(&self) -> &str {
        self.image_format.as_deref().unwrap_or(DEFAULT_IMAGE_FORMAT)
    }

    /// The region to use: the provider's `region-name` if set, else the cloud's.
    pub fn region<'a>(&'a self, provider_region: Option<&'a str>) -> Option<&'a str> {
        provider_region.or(self.region_name.as_deref())
    }
}

/// A loaded clouds.yaml.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudsFile {
    pub path: PathBuf,
    clouds: BTreeMap<String, Result<CloudConfig, String>>,
}

/// `force_ipv4` for every cloud of a file, as openstacksdk's loader decides it:
/// `OS_FORCE_IPV4`, else `client: {force_ipv4}` (or `broken-ipv6`); forced as well when
/// `OS_PREFER_IPV6` (else `client: {prefer_ipv6}`) is false.
fn global_force_ipv4(client: Option<&RawClient>, env: &dyn Fn(&str) -> Option<String>) -> bool {
    let get = |k: &str| client.and_then(|c| c.0.get(k)).cloned();
    let prefer = env("OS_PREFER_IPV6")
        .map(Value::String)
        .or_else(|| get("prefer_ipv6"))
        .or_else(|| get("prefer-ipv6"))
        .map(|v| get_boolean(&v))
        .unwrap_or(true);
    let force = env("OS_FORCE_IPV4")
        .map(Value::String)
        .or_else(|| get("force_ipv4"))
        .or_else(|| get("broken-ipv6"))
        .is_some_and(|v| get_boolean(&v));
    force || !prefer
}

/// openstacksdk's `get_boolean`: a bool as is, a string only when it is `true` (any
/// case), anything else false.
fn get_boolean(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The files searched, in order.
pub fn search_paths() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(p) = std::env::var_os("OS_CLIENT_CONFIG_FILE").filter(|p| !p.is_empty()) {
        paths.push(PathBuf::from(p));
    }
    paths.push(PathBuf::from("clouds.yaml"));
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        paths.push(Path::new(&home).join(".config/openstack/clouds.yaml"));
    }
    paths.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    paths
}

impl CloudsFile {
    /// Loads the first existing file of [`search_paths`].
    pub fn load() -> Result<Self, CloudsYamlError> {
        Self::load_first(&search_paths())
    }

    /// Loads the first existing file of `paths`.
    pub fn load_first(paths: &[PathBuf]) -> Result<Self, CloudsYamlError> {
        for p in paths {
            if p.is_file() {
                return Self::load_from(p);
            }
        }
        Err(CloudsYamlError::NotFound {
            searched: paths.to_vec(),
        })
    }

    /// Loads one file.
    pub fn load_from(path: &Path) -> Result<Self, CloudsYamlError> {
        let text = std::fs::read_to_string(path).map_err(|source| CloudsYamlError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses clouds.yaml text; `path` is used in error messages. Entries are validated
    /// lazily (a broken entry only fails the provider that uses it), but syntax errors
    /// fail the whole file. `OS_FORCE_IPV4`/`OS_PREFER_IPV6` are read from the
    /// environment.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CloudsYamlError> {
        Self::parse_with_env(text, path, &|k| std::env::var(k).ok())
    }

    /// [`parse`](Self::parse) with the environment variables from `env`.
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, CloudsYamlError> {
        let raw: Option<RawFile> = serde_saphyr::from_str(text).map_err(|e| {
            let inner = e.without_snippet();
            let message = serde_saphyr::DefaultMessageFormatter
                .format_message(inner)
                .into_owned();
            let (line, column) = inner
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            CloudsYamlError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        })?;
        let raw = raw.unwrap_or_default();
        let force_ipv4 = global_force_ipv4(raw.client.as_ref(), env);
        let clouds = raw
            .clouds
            .unwrap_or_default()
            .into_iter()
            .map(|(name, c)| {
                let v = c.validate(&name, force_ipv4);
                (name, v)
            })
            .collect();
        Ok(CloudsFile {
            path: path.to_path_buf(),
            clouds,
        })
    }

    /// Names of all entries.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.clouds.keys().map(String::as_str)
    }

    /// The entry `name`, validated.
    pub fn cloud(&self, name: &str) -> Result<&CloudConfig, CloudsYamlError> {
        match self.clouds.get(name) {
            Some(Ok(c)) => Ok(c),
            Some(Err(message)) => Err(CloudsYamlError::Invalid {
                path: self.path.clone(),
                cloud: name.to_string(),
                message: message.clone(),
            }),
            None => Err(CloudsYamlError::UnknownCloud {
                path: self.path.clone(),
                cloud: name.to_string(),
                known: self.clouds.keys().cloned().collect(),
            }),
        }
    }
}

// ---- raw serde shapes ----

/// A scalar of any YAML type read as a string (`password: 12345` is a string to us).
fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<Value> = Option::deserialize(d)?;
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(other) => Some(other.to_string()),
    })
}

fn bool_like<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v: Option<Value> = Option::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) => match s.to_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Some(true)),
            "false" | "no" | "off" | "0" => Ok(Some(false)),
            _ => Err(serde::de::Error::custom(format!(
                "expected a boolean, got `{s}`"
            ))),
        },
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a boolean, got {other}"
        ))),
    }
}

#[derive(Default, Deserialize)]
struct RawFile {
    #[serde(default)]
    clouds: Option<BTreeMap<String, RawCloud>>,
    #[serde(default)]
    client: Option<RawClient>,
}

/// The file's `client:` section (only the IPv6 switches are read).
#[derive(Default, Deserialize)]
struct RawClient(BTreeMap<String, Value>);

/// One `networks` entry of a cloud.
#[derive(Deserialize)]
struct RawNetwork {
    #[serde(default, deserialize_with = "scalar")]
    name: Option<String>,
    #[serde(default, deserialize_with = "bool_like")]
    routes_externally: Option<bool>,
    #[serde(default, deserialize_with = "bool_like")]
    routes_ipv4_externally: Option<bool>,
    #[serde(default, deserialize_with = "bool_like")]
    routes_ipv6_externally: Option<bool>,
    #[serde(default, deserialize_with = "bool_like")]
    default_interface: Option<bool>,
}

#[derive(Default, Deserialize)]
struct RawCloud {
    #[serde(default, deserialize_with = "scalar")]
    auth_type: Option<String>,
    #[serde(default)]
    auth: Option<RawAuth>,
    #[serde(default, deserialize_with = "scalar")]
    region_name: Option<String>,
    #[serde(default)]
    regions: Option<Vec<RawRegion>>,
    #[serde(default, deserialize_with = "scalar")]
    interface: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    identity_api_version: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    cacert: Option<String>,
    #[serde(default, deserialize_with = "bool_like")]
    verify: Option<bool>,
    #[serde(default, deserialize_with = "scalar")]
    image_format: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    compute_api_version: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    profile: Option<String>,
    #[serde(default, deserialize_with = "bool_like")]
    force_ipv4: Option<bool>,
    #[serde(default, deserialize_with = "bool_like")]
    prefer_ipv6: Option<bool>,
    #[serde(default, deserialize_with = "bool_like")]
    private: Option<bool>,
    #[serde(default, deserialize_with = "bool_like")]
    use_external_network: Option<bool>,
    #[serde(default, deserialize_with = "bool_like")]
    use_internal_network: Option<bool>,
    #[serde(default)]
    networks: Option<Vec<RawNetwork>>,
    #[serde(default, deserialize_with = "scalar")]
    external_network: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    internal_network: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRegion {
    Name(String),
    Entry { name: String },
}

#[derive(Default, Deserialize)]
struct RawAuth {
    #[serde(default, deserialize_with = "scalar")]
    auth_url: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    username: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    password: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    project_name: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    project_id: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    tenant_name: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    tenant_id: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    user_domain_name: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    user_domain_id: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    project_domain_name: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    project_domain_id: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    domain_name: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    domain_id: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    application_credential_id: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    application_credential_name: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    application_credential_secret: Option<String>,
}

fn domain(id: &Option<String>, name: &Option<String>, a: &RawAuth) -> Domain {
    match (id, name, &a.domain_id, &a.domain_name) {
        (Some(id), _, _, _) => Domain::Id(id.clone()),
        (None, Some(n), _, _) => Domain::Name(n.clone()),
        (None, None, Some(id), _) => Domain::Id(id.clone()),
        (None, None, None, Some(n)) => Domain::Name(n.clone()),
        _ => Domain::default(),
    }
}

impl RawCloud {
    /// The address settings; `force_ipv4` is the file-wide value.
    fn address_policy(&mut self, force_ipv4: bool) -> Result<AddressPolicy, String> {
        let mut networks = Vec::new();
        for (i, n) in self
            .networks
            .take()
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let name = n
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("networks[{i}]: the required field `name` is missing"))?;
            let external = n.routes_externally.unwrap_or(false);
            networks.push(NetworkRole {
                name,
                routes_ipv4_externally: n.routes_ipv4_externally.unwrap_or(external),
                routes_ipv6_externally: n.routes_ipv6_externally.unwrap_or(external),
                default_interface: n.default_interface.unwrap_or(false),
            });
        }
        for (key, value, external) in [
            ("external_network", self.external_network.take(), true),
            ("internal_network", self.internal_network.take(), false),
        ] {
            let Some(name) = value else { continue };
            if !networks.is_empty() {
                return Err(format!(
                    "both {key} and networks are set; use the networks list only"
                ));
            }
            networks.push(NetworkRole {
                name,
                routes_ipv4_externally: external,
                routes_ipv6_externally: external,
                default_interface: external,
            });
        }
        if networks.iter().filter(|n| n.default_interface).count() > 1 {
            return Err("more than one network has default_interface: true".to_string());
        }
        Ok(AddressPolicy {
            force_ipv4: self.force_ipv4.unwrap_or(force_ipv4) || self.prefer_ipv6 == Some(false),
            private: self.private.unwrap_or(false),
            use_external_network: self.use_external_network.unwrap_or(true),
            use_internal_network: self.use_internal_network.unwrap_or(true),
            networks,
            local_ipv6: false,
        })
    }

    fn validate(mut self, name: &str, force_ipv4: bool) -> Result<CloudConfig, String> {
        let addresses = self.address_policy(force_ipv4)?;
        if let Some(v) = &self.identity_api_version {
            if !(v == "3" || v.starts_with("3.")) {
                return Err(format!(
                    "identity_api_version {v} is not supported (only Keystone v3)"
                ));
            }
        }
        let a = self.auth.unwrap_or_default();
        let auth_url = match (&a.auth_url, &self.profile) {
            (Some(u), _) if !u.trim().is_empty() => u.trim().to_string(),
            (_, Some(p)) => {
                return Err(format!(
                    "auth.auth_url is missing (vendor profile `{p}` is not supported; set auth_url)"
                ))
            }
            _ => return Err("auth.auth_url is missing".to_string()),
        };
        let auth_type = self
            .auth_type
            .as_deref()
            .unwrap_or("password")
            .to_lowercase();
        let auth = auth_config(&auth_type, auth_url, &a)?;
        let regions: Vec<String> = self
            .regions
            .unwrap_or_default()
            .into_iter()
            .map(|r| match r {
                RawRegion::Name(n) => n,
                RawRegion::Entry { name } => name,
            })
            .collect();
        let region_name = self
            .region_name
            .filter(|r| !r.is_empty())
            .or_else(|| regions.first().cloned());
        let interface = self
            .interface
            .map(|i| i.trim_end_matches("URL").to_lowercase())
            .unwrap_or_else(|| DEFAULT_INTERFACE.to_string());
        if !matches!(interface.as_str(), "public" | "internal" | "admin") {
            return Err(format!(
                "interface `{interface}` is not one of public, internal, admin"
            ));
        }
        Ok(CloudConfig {
            name: name.to_string(),
            auth,
            region_name,
            regions,
            interface,
            cacert: self.cacert.map(PathBuf::from),
            verify: self.verify.unwrap_or(true),
            image_format: self.image_format,
            compute_api_version: self.compute_api_version,
            addresses,
        })
    }
}

/// The credentials of one cloud entry for `auth_type`.
fn auth_config(auth_type: &str, auth_url: String, a: &RawAuth) -> Result<AuthConfig, String> {
    Ok(match auth_type {
        "password" | "v3password" => {
            let password = a
                .password
                .clone()
                .ok_or("auth.password is missing (auth_type password)")?;
            if a.username.is_none() && a.user_id.is_none() {
                return Err("auth.username (or user_id) is missing".to_string());
            }
            let project_id = a.project_id.clone().or(a.tenant_id.clone());
            let project_name = a.project_name.clone().or(a.tenant_name.clone());
            if project_id.is_none() && project_name.is_none() {
                return Err(
                    "auth.project_name (or project_id) is missing: a project-scoped token is needed for the service catalog"
                        .to_string(),
                );
            }
            AuthConfig::Password(PasswordAuth {
                auth_url,
                user_id: a.user_id.clone(),
                username: a.username.clone(),
                user_domain: domain(&a.user_domain_id, &a.user_domain_name, a),
                password: Secret(password),
                project_id,
                project_name,
                project_domain: domain(&a.project_domain_id, &a.project_domain_name, a),
            })
        }
        "v3applicationcredential" | "applicationcredential" | "application_credential" => {
            let secret = a
                .application_credential_secret
                .clone()
                .ok_or("auth.application_credential_secret is missing")?;
            if a.application_credential_id.is_none() {
                if a.application_credential_name.is_none() {
                    return Err("auth.application_credential_id (or _name) is missing".to_string());
                }
                if a.username.is_none() && a.user_id.is_none() {
                    return Err(
                        "auth.username (or user_id) is needed with application_credential_name"
                            .to_string(),
                    );
                }
            }
            AuthConfig::ApplicationCredential(AppCredentialAuth {
                auth_url,
                id: a.application_credential_id.clone(),
                name: a.application_credential_name.clone(),
                user_id: a.user_id.clone(),
                username: a.username.clone(),
                user_domain: domain(&a.user_domain_id, &a.user_domain_name, a),
                secret: Secret(secret),
            })
        }
        other => {
            return Err(format!(
                "auth_type `{other}` is not supported (use password or v3applicationcredential)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
clouds:
  devstack:
    auth:
      auth_url: http://127.0.0.1:5000/v3
      username: demo
      password: s3cr3t-pass
      project_name: demo
      user_domain_name: Default
      project_domain_id: default
    region_name: RegionOne
    interface: internal
    image_format: raw
    verify: no
    cacert: /etc/ssl/ca.pem
    identity_api_version: 3
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: http://127.0.0.1:5000
      application_credential_id: abc123
      application_credential_secret: 987654
    regions:
      - name: R1
      - R2
  broken:
    auth:
      username: x
  weird:
    auth_type: token
    auth: {auth_url: http://x}
metrics:
  statsd: {prefix: openstack.api}
"#;

    fn file() -> CloudsFile {
        CloudsFile::parse(YAML, Path::new("/tmp/clouds.yaml")).unwrap()
    }

    #[test]
    fn password_cloud() {
        let f = file();
        let c = f.cloud("devstack").unwrap();
        assert_eq!(c.region_name.as_deref(), Some("RegionOne"));
        assert_eq!(c.region(Some("R9")), Some("R9"));
        assert_eq!(c.region(None), Some("RegionOne"));
        assert_eq!(c.interface, "internal");
        assert_eq!(c.image_format(), "raw");
        assert!(!c.verify);
        assert_eq!(c.cacert.as_deref(), Some(Path::new("/etc/ssl/ca.pem")));
        match &c.auth {
            AuthConfig::Password(p) => {
                assert_eq!(p.username.as_deref(), Some("demo"));
                assert_eq!(p.password.expose(), "s3cr3t-pass");
                assert_eq!(p.user_domain, Domain::Name("Default".into()));
                assert_eq!(p.project_domain, Domain::Id("default".into()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn app_credential_cloud() {
        let f = file();
        let c = f.cloud("appcred").unwrap();
        assert_eq!(c.image_format(), DEFAULT_IMAGE_FORMAT);
        assert_eq!(c.region_name.as_deref(), Some("R1"));
        assert_eq!(c.regions, ["R1", "R2"]);
        assert_eq!(c.interface, "public");
        assert!(c.verify);
        match &c.auth {
            AuthConfig::ApplicationCredential(a) => {
                assert_eq!(a.id.as_deref(), Some("abc123"));
                // a numeric YAML scalar is still a string secret
                assert_eq!(a.secret.expose(), "987654");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let f = file();
        let dbg = format!("{f:?}");
        assert!(!dbg.contains("s3cr3t-pass"), "{dbg}");
        assert!(!dbg.contains("987654"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        assert_eq!(Secret::new("x").to_string(), "<redacted>");
    }

    #[test]
    fn errors_name_the_cloud_and_file() {
        let f = file();
        let e = f.cloud("broken").unwrap_err().to_string();
        assert!(
            e.contains("/tmp/clouds.yaml") && e.contains("`broken`") && e.contains("auth_url"),
            "{e}"
        );
        let e = f.cloud("weird").unwrap_err().to_string();
        assert!(e.contains("auth_type `token`"), "{e}");
        let e = f.cloud("nope").unwrap_err().to_string();
        assert!(
            e.contains("no cloud named `nope`") && e.contains("devstack"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let e =
            CloudsFile::parse("clouds:\n  a:\n    verify: [1\n", Path::new("c.yaml")).unwrap_err();
        match &e {
            CloudsYamlError::Syntax { line, .. } => assert!(*line >= 3, "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().starts_with("c.yaml:"), "{e}");
        // empty file: no clouds
        let f = CloudsFile::parse("", Path::new("e.yaml")).unwrap();
        assert_eq!(f.names().count(), 0);
    }

    #[test]
    fn address_settings() {
        let yaml = r#"
client:
  force_ipv4: "True"
clouds:
  plain:
    auth: {auth_url: http://a, username: u, password: p, project_id: p}
  v6:
    auth: {auth_url: http://a, username: u, password: p, project_id: p}
    force_ipv4: false
    private: true
    networks:
      - name: ext-net
        routes_externally: true
        routes_ipv6_externally: false
      - name: int-net
        default_interface: true
  old:
    auth: {auth_url: http://a, username: u, password: p, project_id: p}
    prefer_ipv6: false
    external_network: pub
  bad:
    auth: {auth_url: http://a, username: u, password: p, project_id: p}
    networks:
      - routes_externally: true
"#;
        let no_env = |_: &str| None;
        let f = CloudsFile::parse_with_env(yaml, Path::new("c.yaml"), &no_env).unwrap();
        let plain = &f.cloud("plain").unwrap().addresses;
        assert!(plain.force_ipv4 && !plain.private && plain.use_external_network);
        let v6 = &f.cloud("v6").unwrap().addresses;
        assert!(!v6.force_ipv4 && v6.private);
        assert_eq!(v6.networks.len(), 2);
        assert!(v6.networks[0].routes_ipv4_externally && !v6.networks[0].routes_ipv6_externally);
        assert!(v6.networks[1].default_interface && !v6.networks[1].routes_ipv4_externally);
        let old = &f.cloud("old").unwrap().addresses;
        assert!(old.force_ipv4);
        assert_eq!(old.networks[0].name, "pub");
        assert!(old.networks[0].default_interface);
        let e = f.cloud("bad").unwrap_err().to_string();
        assert!(
            e.contains("`bad`") && e.contains("networks[0]") && e.contains("name"),
            "{e}"
        );
        // The environment beats the client section; prefer_ipv6 false forces IPv4.
        let env = |k: &str| (k == "OS_FORCE_IPV4").then(|| "false".to_string());
        let f = CloudsFile::parse_with_env(yaml, Path::new("c.yaml"), &env).unwrap();
        assert!(!f.cloud("plain").unwrap().addresses.force_ipv4);
        let env = |k: &str| (k == "OS_PREFER_IPV6").then(|| "no".to_string());
        let f = CloudsFile::parse_with_env(
            "clouds: {x: {auth: {auth_url: http://a, username: u, password: p, project_id: p}}}",
            Path::new("c.yaml"),
            &env,
        )
        .unwrap();
        assert!(f.cloud("x").unwrap().addresses.force_ipv4);
    }

    #[test]
    fn search_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(
            &b,
            "clouds: {x: {auth: {auth_url: http://b, username: u, password: p, project_id: p}}}",
        )
        .unwrap();
        let f = CloudsFile::load_first(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(f.path, b);
        assert!(f.cloud("x").is_ok());
        let e = CloudsFile::load_first(&[a]).unwrap_err();
        assert!(e.to_string().contains("a.yaml"), "{e}");
        let paths = search_paths();
        assert!(paths.contains(&PathBuf::from("clouds.yaml")));
        assert_eq!(
            paths.last().unwrap(),
            Path::new("/etc/openstack/clouds.yaml")
        );
    }
}
