//! Keystone v3 token authentication: the request body for each auth type, the token
//! reply (token, expiry, service catalog) and endpoint selection by service type,
//! region and interface.
//!
//! Pure functions only; the HTTP exchange lives in [`super::transport`]. Catalog URLs
//! are used as given, except that a version suffix is added for the image (`/v2`) and
//! network (`/v2.0`) services when the catalog lists an unversioned root, so that no
//! version-discovery request is ever needed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};

use super::clouds_yaml::{AuthConfig, Domain, Secret};
use super::error::CloudError;

/// The metric/operation name of the token request.
pub const AUTH_OPERATION: &str = "identity.POST.auth.tokens";

/// The OpenStack services the driver talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Compute,
    Image,
    Network,
    Volume,
}

impl Service {
    /// The name used in metrics (`nodepool.task.<provider>.<service>.…`).
    pub fn metric_name(self) -> &'static str {
        match self {
            Service::Compute => "compute",
            Service::Image => "image",
            Service::Network => "network",
            Service::Volume => "volume",
        }
    }

    /// Catalog `type`s that provide this service, most preferred first.
    fn catalog_types(self) -> &'static [&'static str] {
        match self {
            Service::Compute => &["compute"],
            Service::Image => &["image"],
            Service::Network => &["network"],
            Service::Volume => &["block-storage", "volumev3", "volumev2", "volume"],
        }
    }

    /// Version path appended to an unversioned catalog URL.
    fn version_suffix(self) -> Option<&'static str> {
        match self {
            Service::Image => Some("v2"),
            Service::Network => Some("v2.0"),
            Service::Compute | Service::Volume => None,
        }
    }
}

/// `POST` target for a token: `<auth_url>/v3/auth/tokens` (or `/auth/tokens` when the
/// URL already ends in `/v3`).
pub fn token_url(auth_url: &str) -> String {
    let base = auth_url.trim_end_matches('/');
    if base.ends_with("/v3") {
        format!("{base}/auth/tokens")
    } else {
        format!("{base}/v3/auth/tokens")
    }
}

fn domain_json(d: &Domain) -> Value {
    match d {
        Domain::Id(id) => json!({ "id": id }),
        Domain::Name(n) => json!({ "name": n }),
    }
}

fn user_json(user_id: &Option<String>, username: &Option<String>, domain: &Domain) -> Value {
    match (user_id, username) {
        (Some(id), _) => json!({ "id": id }),
        (None, name) => json!({ "name": name, "domain": domain_json(domain) }),
    }
}

/// The token request body. It holds the secret: never log it.
pub fn token_request_body(auth: &AuthConfig) -> Value {
    match auth {
        AuthConfig::Password(p) => {
            let mut user = user_json(&p.user_id, &p.username, &p.user_domain);
            user["password"] = Value::String(p.password.expose().to_string());
            let project = match (&p.project_id, &p.project_name) {
                (Some(id), _) => json!({ "id": id }),
                (None, name) => json!({ "name": name, "domain": domain_json(&p.project_domain) }),
            };
            json!({ "auth": {
                "identity": { "methods": ["password"], "password": { "user": user } },
                "scope": { "project": project }
            }})
        }
        AuthConfig::ApplicationCredential(a) => {
            let mut cred = match &a.id {
                Some(id) => json!({ "id": id }),
                None => json!({
                    "name": a.name,
                    "user": user_json(&a.user_id, &a.username, &a.user_domain),
                }),
            };
            cred["secret"] = Value::String(a.secret.expose().to_string());
            json!({ "auth": { "identity": {
                "methods": ["application_credential"],
                "application_credential": cred
            }}})
        }
    }
}

#[derive(Deserialize)]
struct TokenReply {
    token: TokenBody,
}

#[derive(Deserialize)]
struct TokenBody {
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    catalog: Option<Vec<CatalogEntry>>,
    #[serde(default)]
    project: Option<Value>,
}

/// One service of the catalog.
#[derive(Clone, Debug, Deserialize)]
pub struct CatalogEntry {
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

/// One endpoint of a catalog service.
#[derive(Clone, Debug, Deserialize)]
pub struct CatalogEndpoint {
    pub interface: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub region_id: Option<String>,
    pub url: String,
}

/// A valid token and what came with it.
#[derive(Clone, Debug)]
pub struct Token {
    pub value: Secret,
    /// `None` when Keystone did not say (never re-authenticated proactively then).
    pub expires_at: Option<SystemTime>,
    pub catalog: Vec<CatalogEntry>,
    pub project_id: Option<String>,
}

impl Token {
    /// Parses the token reply (`X-Subject-Token` header value plus JSON body).
    pub fn from_reply(subject_token: Option<&str>, body: &[u8]) -> Result<Self, CloudError> {
        let value = subject_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| CloudError::bad_reply(AUTH_OPERATION, "no X-Subject-Token header"))?;
        let reply: TokenReply = serde_json::from_slice(body)
            .map_err(|e| CloudError::bad_reply(AUTH_OPERATION, format!("token JSON: {e}")))?;
        let expires_at = match reply.token.expires_at.as_deref() {
            None => None,
            Some(s) => Some(parse_timestamp(s).ok_or_else(|| {
                CloudError::bad_reply(AUTH_OPERATION, format!("bad expires_at `{s}`"))
            })?),
        };
        let catalog = reply.token.catalog.ok_or_else(|| {
            CloudError::bad_reply(
                AUTH_OPERATION,
                "token has no service catalog (is the token project-scoped?)",
            )
        })?;
        let project_id = reply
            .token
            .project
            .as_ref()
            .and_then(|p| p.get("id"))
            .and_then(|i| i.as_str())
            .map(str::to_string);
        Ok(Token {
            value: Secret::new(value),
            expires_at,
            catalog,
            project_id,
        })
    }

    /// True when the token expires within `margin` from now.
    pub fn expires_within(&self, margin: Duration) -> bool {
        match self.expires_at {
            Some(t) => SystemTime::now() + margin >= t,
            None => false,
        }
    }

    /// The endpoint URL for `service` in `region` (any region if `None`) with
    /// `interface`, with the version suffix added where needed and no trailing `/`.
    pub fn endpoint(
        &self,
        service: Service,
        region: Option<&str>,
        interface: &str,
    ) -> Result<String, CloudError> {
        endpoint_from_catalog(&self.catalog, service, region, interface)
    }
}

/// See [`Token::endpoint`].
pub fn endpoint_from_catalog(
    catalog: &[CatalogEntry],
    service: Service,
    region: Option<&str>,
    interface: &str,
) -> Result<String, CloudError> {
    for ty in service.catalog_types() {
        for entry in catalog.iter().filter(|e| e.service_type == *ty) {
            let found = entry.endpoints.iter().find(|ep| {
                ep.interface.eq_ignore_ascii_case(interface)
                    && region.is_none_or(|r| {
                        ep.region.as_deref() == Some(r) || ep.region_id.as_deref() == Some(r)
                    })
            });
            if let Some(ep) = found {
                return Ok(versioned(service, &ep.url));
            }
        }
    }
    Err(CloudError::EndpointNotFound {
        service: service.metric_name().to_string(),
        region: region.unwrap_or("any").to_string(),
        interface: interface.to_string(),
    })
}

fn versioned(service: Service, url: &str) -> String {
    let base = url.trim_end_matches('/');
    match service.version_suffix() {
        Some(v) => {
            let last = base.rsplit('/').next().unwrap_or("");
            let has_version = last.len() > 1
                && last.starts_with('v')
                && last[1..].chars().all(|c| c.is_ascii_digit() || c == '.');
            if has_version {
                base.to_string()
            } else {
                format!("{base}/{v}")
            }
        }
        None => base.to_string(),
    }
}

/// Parses Keystone's `expires_at` (`2026-11-24T12:00:00.000000Z`, also `+00:00` or a
/// numeric offset) into a time.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', ' '])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    // Split the time from the zone designator.
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(pos) = rest.rfind(['+', '-']) {
        let (t, z) = rest.split_at(pos);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = &z[1..];
        let (h, m) = z
            .split_once(':')
            .unwrap_or((z.get(..2)?, z.get(2..).unwrap_or("0")));
        let h: i64 = h.parse().ok()?;
        let m: i64 = if m.is_empty() { 0 } else { m.parse().ok()? };
        (t, sign * (h * 3600 + m * 60))
    } else {
        (rest, 0)
    };
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':');
    let hh: i64 = t.next()?.parse().ok()?;
    let mm: i64 = t.next()?.parse().ok()?;
    let ss: i64 = t.next().unwrap_or("0").parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86400 + hh * 3600 + mm * 60 + ss - offset_secs;
    if secs < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::clouds_yaml::{AppCredentialAuth, PasswordAuth};

    fn epoch(s: &str) -> u64 {
        parse_timestamp(s)
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn timestamps() {
        assert_eq!(epoch("1970-01-01T00:00:00Z"), 0);
        assert_eq!(epoch("2026-11-24T12:00:00.000000Z"), 1_795_521_600);
        assert_eq!(epoch("2026-11-24T13:00:00+01:00"), 1_795_521_600);
        assert_eq!(epoch("2026-11-24T11:30:00-0030"), 1_795_521_600);
        assert_eq!(epoch("2000-02-29T00:00:00"), 951_782_400);
        assert!(parse_timestamp("yesterday").is_none());
        assert!(parse_timestamp("2026-13-01T00:00:00Z").is_none());
    }

    #[test]
    fn token_urls() {
        assert_eq!(token_url("http://k:5000"), "http://k:5000/v3/auth/tokens");
        assert_eq!(
            token_url("http://k:5000/v3/"),
            "http://k:5000/v3/auth/tokens"
        );
        assert_eq!(
            token_url("https://k/identity"),
            "https://k/identity/v3/auth/tokens"
        );
    }

    #[test]
    fn password_body() {
        let auth = AuthConfig::Password(PasswordAuth {
            auth_url: "http://k".into(),
            user_id: None,
            username: Some("demo".into()),
            user_domain: Domain::Name("Default".into()),
            password: Secret::new("pw"),
            project_id: None,
            project_name: Some("demo".into()),
            project_domain: Domain::default(),
        });
        let b = token_request_body(&auth);
        assert_eq!(b["auth"]["identity"]["methods"][0], "password");
        let user = &b["auth"]["identity"]["password"]["user"];
        assert_eq!(user["name"], "demo");
        assert_eq!(user["domain"]["name"], "Default");
        assert_eq!(user["password"], "pw");
        assert_eq!(b["auth"]["scope"]["project"]["domain"]["id"], "default");
        assert!(!format!("{auth:?}").contains("pw\""));
    }

    #[test]
    fn app_credential_body() {
        let auth = AuthConfig::ApplicationCredential(AppCredentialAuth {
            auth_url: "http://k".into(),
            id: Some("cid".into()),
            name: None,
            user_id: None,
            username: None,
            user_domain: Domain::default(),
            secret: Secret::new("sec"),
        });
        let b = token_request_body(&auth);
        assert_eq!(
            b["auth"]["identity"]["methods"][0],
            "application_credential"
        );
        let c = &b["auth"]["identity"]["application_credential"];
        assert_eq!(c["id"], "cid");
        assert_eq!(c["secret"], "sec");
        assert!(b["auth"].get("scope").is_none());
    }

    const TOKEN: &str = r#"{"token": {
        "expires_at": "2099-01-01T00:00:00.000000Z",
        "project": {"id": "proj1", "name": "demo"},
        "catalog": [
          {"type": "compute", "name": "nova", "endpoints": [
            {"interface": "public", "region": "R1", "region_id": "R1", "url": "http://127.0.0.1:1/compute/v2.1/"},
            {"interface": "internal", "region": "R1", "url": "http://10.0.0.1/compute/v2.1"},
            {"interface": "public", "region": "R2", "url": "http://127.0.0.2/compute/v2.1"}]},
          {"type": "image", "endpoints": [{"interface": "public", "region": "R1", "url": "http://127.0.0.1:2"}]},
          {"type": "network", "endpoints": [{"interface": "public", "region": "R1", "url": "http://127.0.0.1:3/v2.0"}]},
          {"type": "volumev3", "endpoints": [{"interface": "public", "region": "R1", "url": "http://127.0.0.1:4/v3/proj1"}]}
        ]}}"#;

    #[test]
    fn token_and_catalog() {
        let t = Token::from_reply(Some("tok"), TOKEN.as_bytes()).unwrap();
        assert_eq!(t.value.expose(), "tok");
        assert_eq!(t.project_id.as_deref(), Some("proj1"));
        assert!(!t.expires_within(Duration::from_secs(60)));
        let ep = |s, r, i| t.endpoint(s, r, i).unwrap();
        assert_eq!(
            ep(Service::Compute, Some("R1"), "public"),
            "http://127.0.0.1:1/compute/v2.1"
        );
        assert_eq!(
            ep(Service::Compute, Some("R2"), "public"),
            "http://127.0.0.2/compute/v2.1"
        );
        assert_eq!(
            ep(Service::Compute, None, "internal"),
            "http://10.0.0.1/compute/v2.1"
        );
        assert_eq!(
            ep(Service::Image, Some("R1"), "public"),
            "http://127.0.0.1:2/v2"
        );
        assert_eq!(
            ep(Service::Network, Some("R1"), "public"),
            "http://127.0.0.1:3/v2.0"
        );
        assert_eq!(
            ep(Service::Volume, Some("R1"), "public"),
            "http://127.0.0.1:4/v3/proj1"
        );
        let e = t
            .endpoint(Service::Image, Some("R3"), "public")
            .unwrap_err();
        assert!(matches!(e, CloudError::EndpointNotFound { .. }), "{e}");
    }

    #[test]
    fn bad_token_replies() {
        assert!(matches!(
            Token::from_reply(None, TOKEN.as_bytes()),
            Err(CloudError::BadReply { .. })
        ));
        let e = Token::from_reply(Some("t"), b"not json").unwrap_err();
        assert!(e.to_string().contains(AUTH_OPERATION), "{e}");
        let e = Token::from_reply(Some("t"), br#"{"token": {"expires_at": null}}"#).unwrap_err();
        assert!(e.to_string().contains("catalog"), "{e}");
    }
}
