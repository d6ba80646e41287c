//! Cloud drivers: the operations the launcher and builder need from a cloud, behind one
//! object-safe trait ([`CloudDriver`]), and its OpenStack implementation
//! ([`OpenStackDriver`]), a thin client of our own on reqwest that makes exactly one
//! HTTP request per operation (list operations: one per page). See
//! `docs/decisions.md` for why it is not the `openstack` or `openstack_sdk` crate.
//!
//! * [`setup`]: the one constructor of a provider's driver (launcher, builder, CLI).
//! * [`clouds_yaml`]: clouds.yaml search and parsing, credentials as [`Secret`]s.
//! * [`console`]: server console logs for operators (driver per provider, safe text).
//! * [`addresses`]: a server's node addresses, as openstacksdk computes them.
//! * [`auth`]: Keystone v3 token request/reply and service-catalog endpoint selection.
//! * [`auth_backoff`]: no token requests for a while after one failed.
//! * [`transport`]: one HTTP request per call, rate limit (token requests included),
//!   token renewal, statsd timer.
//! * [`openstack`]: the OpenStack API calls and reply parsing.
//! * [`types`], [`flavor`], [`error`]: cloud objects, flavor choice, typed errors.
//!
//! The trait is object-safe (methods return boxed futures) so that daemons can hold an
//! `Arc<dyn CloudDriver>` per provider and tests can substitute another implementation.
//!
//! ```no_run
//! use nodepool_shared::cloud::{CloudDriver, CloudsFile, DriverOptions, OpenStackDriver};
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let clouds = CloudsFile::load()?;
//! let mut opts = DriverOptions::new("my-provider");
//! opts.rate = 1.0;
//! let driver = OpenStackDriver::new(clouds.cloud("devstack")?, opts)?;
//! for s in driver.list_servers().await? {
//!     println!("{} {}", s.id, s.status);
//! }
//! # Ok(()) }
//! ```

pub mod addresses;
pub mod auth;
pub mod auth_backoff;
pub mod clouds_yaml;
pub mod console;
pub mod error;
pub mod flavor;
mod http_clients;
pub mod openstack;
#[cfg(test)]
mod props;
pub mod rate;
pub mod setup;
pub(crate) mod transport;
pub mod types;

use std::path::Path;
use std::time::Duration;

use futures::future::BoxFuture;

pub use addresses::{server_ips, AddressPolicy, NetworkRole, ServerIps};
pub use clouds_yaml::{AuthConfig, CloudConfig, CloudsFile, CloudsYamlError, Secret};
pub use error::{is_quota_message, CloudError};
pub use flavor::{choose_flavor, FlavorWanted};
pub use openstack::OpenStackDriver;
pub use setup::provider_driver;
pub use types::{
    AttachedVolume, ComputeLimits, CreateServer, CreatedServer, Flavor, FloatingIp, Image,
    ImageCreate, Limit, Network, Port, PortFilter, Server, ServerAddress, Volume, VolumeLimits,
};

use crate::stats::Statsd;

/// The Nova microversion requested unless clouds.yaml sets `compute_api_version`
/// (2.79 = Train; it embeds the flavor in server replies, which quota accounting needs).
pub const NOVA_MICROVERSION: &str = "2.79";

/// A cloud call's future.
pub type CloudFuture<'a, T> = BoxFuture<'a, Result<T, CloudError>>;

impl From<CloudsYamlError> for CloudError {
    fn from(e: CloudsYamlError) -> Self {
        CloudError::Config(e.to_string())
    }
}

/// The default [`DriverOptions::max_reply_bytes`]: 64 MiB. A page of 1,000 servers with
/// their details is about 5 MB, and no other reply comes near it.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 64 << 20;

/// Per-provider driver settings (from the provider's config section).
#[derive(Clone, Debug)]
pub struct DriverOptions {
    /// Provider name (metrics: `nodepool.task.<provider>.…`).
    pub provider: String,
    /// Provider `region-name`; overrides the cloud's `region_name`.
    pub region_name: Option<String>,
    /// Provider `rate`: minimum seconds between API calls (0 = unlimited).
    pub rate: f64,
    /// Where the API call timers go.
    pub statsd: Statsd,
    /// Timeout of each API call (whole request and reply).
    pub api_timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of an image data upload (`None` = none; the builder enforces
    /// `image-upload-timeout` itself).
    pub upload_timeout: Option<Duration>,
    /// Page size (`limit`) of list calls.
    pub page_size: usize,
    /// Largest reply body read from the cloud ([`DEFAULT_MAX_REPLY_BYTES`]); a larger one
    /// fails the call instead of growing the daemon's memory without bound.
    pub max_reply_bytes: usize,
    /// Whether this host has IPv6 for [`AddressPolicy::local_ipv6`]; `None` = detect
    /// ([`addresses::local_host_has_ipv6`]).
    pub local_ipv6: Option<bool>,
}

impl DriverOptions {
    /// Defaults: rate 1.0 s (Nodepool's default), 60 s call timeout, 10 s connect timeout,
    /// no upload timeout, pages of 1000, replies up to 64 MiB, statsd off.
    pub fn new(provider: impl Into<String>) -> Self {
        DriverOptions {
            provider: provider.into(),
            region_name: None,
            rate: 1.0,
            statsd: Statsd::noop(),
            api_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            upload_timeout: None,
            page_size: 1000,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
            local_ipv6: None,
        }
    }
}

/// What the launcher and builder need from a cloud. Object-safe: use it as
/// `Arc<dyn CloudDriver>`. Every required method is one API request (list methods: one
/// per page); provided methods combine them and say so.
///
/// Deletes treat "not found" as success. Lookups by id return `Ok(None)` on 404.
pub trait CloudDriver: Send + Sync {
    /// The provider this driver serves.
    fn provider(&self) -> &str;

    /// Authenticates now (otherwise done on the first call). Useful to fail fast.
    fn authenticate(&self) -> CloudFuture<'_, ()>;

    // ---- compute ----

    /// Boots a server (`POST /servers`); returns as soon as Nova accepted it.
    fn create_server<'a>(&'a self, req: &'a CreateServer) -> CloudFuture<'a, CreatedServer>;
    /// `GET /servers/{id}`; `None` when it does not exist.
    fn get_server<'a>(&'a self, id: &'a str) -> CloudFuture<'a, Option<Server>>;
    /// All servers (`GET /servers/detail`, paged).
    fn list_servers(&self) -> CloudFuture<'_, Vec<Server>>;
    /// `DELETE /servers/{id}`; already gone = success.
    fn delete_server<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()>;
    /// The console log (`os-getConsoleOutput`), last `length` lines if given.
    fn console_output<'a>(&'a self, id: &'a str, length: Option<u32>) -> CloudFuture<'a, String>;
    /// All flavors (`GET /flavors/detail`, paged).
    fn list_flavors(&self) -> CloudFuture<'_, Vec<Flavor>>;
    /// Absolute compute limits (`GET /limits`).
    fn compute_limits(&self) -> CloudFuture<'_, ComputeLimits>;
    /// Absolute volume limits (`GET /limits` on the volume service); `None` when the
    /// catalog has no volume service.
    fn volume_limits(&self) -> CloudFuture<'_, Option<VolumeLimits>>;
    /// Names of the available availability zones (`GET /os-availability-zone`).
    fn list_availability_zones(&self) -> CloudFuture<'_, Vec<String>>;
    /// How this cloud's server addresses are read (clouds.yaml settings, host IPv6).
    fn address_policy(&self) -> AddressPolicy {
        AddressPolicy::default()
    }

    // ---- block storage ----

    /// All volumes (`GET /volumes/detail` on the volume service, paged); empty when the
    /// catalog has no volume service.
    fn list_volumes(&self) -> CloudFuture<'_, Vec<Volume>>;

    // ---- image ----

    /// All images (`GET /v2/images`, paged).
    fn list_images(&self) -> CloudFuture<'_, Vec<Image>>;
    /// `GET /v2/images/{id}`; `None` when it does not exist.
    fn get_image<'a>(&'a self, id: &'a str) -> CloudFuture<'a, Option<Image>>;
    /// Creates an image record (`POST /v2/images`), status `queued`.
    fn create_image<'a>(&'a self, req: &'a ImageCreate) -> CloudFuture<'a, Image>;
    /// Uploads the image data (`PUT /v2/images/{id}/file`), streamed from `path`:
    /// memory use does not grow with the file size.
    fn upload_image_data<'a>(&'a self, id: &'a str, path: &'a Path) -> CloudFuture<'a, ()>;
    /// `DELETE /v2/images/{id}`; already gone = success.
    fn delete_image<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()>;

    // ---- network ----

    /// All networks (`GET /v2.0/networks`, paged).
    fn list_networks(&self) -> CloudFuture<'_, Vec<Network>>;
    /// All floating IPs (`GET /v2.0/floatingips`, paged).
    fn list_floating_ips(&self) -> CloudFuture<'_, Vec<FloatingIp>>;
    /// Allocates a floating IP from `network_id`, attached to `port_id` if given.
    fn create_floating_ip<'a>(
        &'a self,
        network_id: &'a str,
        port_id: Option<&'a str>,
    ) -> CloudFuture<'a, FloatingIp>;
    /// Attaches a floating IP to a (server's) port.
    fn attach_floating_ip<'a>(
        &'a self,
        id: &'a str,
        port_id: &'a str,
    ) -> CloudFuture<'a, FloatingIp>;
    /// Detaches a floating IP from its port.
    fn detach_floating_ip<'a>(&'a self, id: &'a str) -> CloudFuture<'a, FloatingIp>;
    /// `DELETE /v2.0/floatingips/{id}`; already gone = success.
    fn delete_floating_ip<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()>;
    /// Ports matching `filter` (`GET /v2.0/ports`, paged).
    fn list_ports<'a>(&'a self, filter: &'a PortFilter) -> CloudFuture<'a, Vec<Port>>;
    /// `DELETE /v2.0/ports/{id}`; already gone = success.
    fn delete_port<'a>(&'a self, id: &'a str) -> CloudFuture<'a, ()>;

    // ---- provided: combinations of the calls above ----

    /// [`choose_flavor`] over [`list_flavors`](Self::list_flavors) (one list call).
    fn find_flavor<'a>(&'a self, wanted: FlavorWanted<'a>) -> CloudFuture<'a, Option<Flavor>> {
        Box::pin(async move {
            let flavors = self.list_flavors().await?;
            Ok(choose_flavor(&flavors, &wanted).cloned())
        })
    }

    /// The image whose id is `name_or_id`, else the one image with that name (one list
    /// call); several images with the name → [`CloudError::Ambiguous`].
    fn find_image<'a>(&'a self, name_or_id: &'a str) -> CloudFuture<'a, Option<Image>> {
        Box::pin(async move {
            let images = self.list_images().await?;
            find_image_in(images, name_or_id)
        })
    }

    /// Images that carry property `key` (e.g. `nodepool_build_id` for
    /// `alien-image-list`); one list call, filtered here because Glance cannot filter
    /// on a property's presence.
    fn list_images_with_property<'a>(&'a self, key: &'a str) -> CloudFuture<'a, Vec<Image>> {
        Box::pin(async move {
            let mut images = self.list_images().await?;
            images.retain(|i| i.properties.contains_key(key));
            Ok(images)
        })
    }

    /// The ports of a server (`GET /v2.0/ports?device_id=`), e.g. to attach a floating
    /// IP to.
    fn server_ports<'a>(&'a self, server_id: &'a str) -> CloudFuture<'a, Vec<Port>> {
        Box::pin(async move {
            let filter = PortFilter {
                device_id: Some(server_id.to_string()),
                ..Default::default()
            };
            self.list_ports(&filter).await
        })
    }

    /// openstacksdk's `delete_unattached_floating_ips`: lists floating IPs and deletes
    /// every one not attached to a port (1 + n calls). Returns how many were deleted.
    fn delete_unattached_floating_ips(&self) -> CloudFuture<'_, usize> {
        Box::pin(async move {
            let mut n = 0;
            for fip in self.list_floating_ips().await? {
                if !fip.is_attached() {
                    self.delete_floating_ip(&fip.id).await?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }
}

/// Id match first, then a unique name match.
pub fn find_image_in(images: Vec<Image>, name_or_id: &str) -> Result<Option<Image>, CloudError> {
    if let Some(i) = images.iter().position(|i| i.id == name_or_id) {
        return Ok(images.into_iter().nth(i));
    }
    let mut named: Vec<Image> = images
        .into_iter()
        .filter(|i| i.name == name_or_id)
        .collect();
    match named.len() {
        0 => Ok(None),
        1 => Ok(named.pop()),
        count => Err(CloudError::Ambiguous {
            what: "image",
            name: name_or_id.to_string(),
            count,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(id: &str, name: &str) -> Image {
        Image {
            id: id.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn find_image_rules() {
        let images = vec![
            img("a", "x"),
            img("b", "a"),
            img("c", "dup"),
            img("d", "dup"),
        ];
        assert_eq!(find_image_in(images.clone(), "a").unwrap().unwrap().id, "a");
        assert_eq!(find_image_in(images.clone(), "x").unwrap().unwrap().id, "a");
        assert!(find_image_in(images.clone(), "zzz").unwrap().is_none());
        assert!(matches!(
            find_image_in(images, "dup"),
            Err(CloudError::Ambiguous { count: 2, .. })
        ));
    }

    #[test]
    fn driver_is_object_safe() {
        fn takes(_: Option<std::sync::Arc<dyn CloudDriver>>) {}
        takes(None);
    }
}
