//! `clouds.yaml` loading, as openstacksdk does it for Nodepool: the first existing file
//! of `$OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`, `~/.config/openstack/clouds.yaml`,
//! `/etc/openstack/clouds.yaml`; a provider names its entry with `cloud:` and may
//! override the region with `region-name`.
//!
//! Supported: auth types `password` (also `v3password`) and `v3applicationcredential`,
//! `region_name`/`regions`, `interface`, `cacert`, `verify`, `image_format` (the
//! builder's upload format, default `qcow2`) and `compute_api_version`. Other keys are
//! ignored. Secrets are held in [`Secret`], which never prints its value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_saphyr::MessageFormatter;

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
    /// fail the whole file.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CloudsYamlError> {
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
        let clouds = raw
            .unwrap_or_default()
            .clouds
            .unwrap_or_default()
            .into_iter()
            .map(|(name, c)| {
                let v = c.validate(&name);
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
    fn validate(self, name: &str) -> Result<CloudConfig, String> {
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
        let auth = match auth_type.as_str() {
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
                    user_domain: domain(&a.user_domain_id, &a.user_domain_name, &a),
                    password: Secret(password),
                    project_id,
                    project_name,
                    project_domain: domain(&a.project_domain_id, &a.project_domain_name, &a),
                })
            }
            "v3applicationcredential" | "applicationcredential" | "application_credential" => {
                let secret = a
                    .application_credential_secret
                    .clone()
                    .ok_or("auth.application_credential_secret is missing")?;
                if a.application_credential_id.is_none() {
                    if a.application_credential_name.is_none() {
                        return Err(
                            "auth.application_credential_id (or _name) is missing".to_string()
                        );
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
                    user_domain: domain(&a.user_domain_id, &a.user_domain_name, &a),
                    secret: Secret(secret),
                })
            }
            other => {
                return Err(format!(
                    "auth_type `{other}` is not supported (use password or v3applicationcredential)"
                ))
            }
        };
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
        })
    }
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
