//! The one constructor of a provider's cloud driver, shared by the launcher, the builder
//! and the CLI so that all three talk to a provider the same way: its clouds.yaml
//! entry (`cloud`), region (`region-name`), API rate (`rate`), address settings and
//! statsd timers.

use crate::config::Provider;
use crate::stats::Statsd;

use super::clouds_yaml::CloudsFile;
use super::error::CloudError;
use super::openstack::OpenStackDriver;
use super::DriverOptions;

/// The OpenStack driver of `provider`, from its entry in `clouds` (no network traffic
/// yet). A missing or broken clouds.yaml entry is a [`CloudError::Config`] naming the
/// provider, the file and the cloud.
pub fn provider_driver(
    provider: &Provider,
    clouds: &CloudsFile,
    statsd: &Statsd,
) -> Result<OpenStackDriver, CloudError> {
    let cloud = clouds
        .cloud(&provider.cloud)
        .map_err(|e| CloudError::Config(format!("provider {}: {e}", provider.name)))?;
    OpenStackDriver::new(cloud, driver_options(provider, statsd))
}

/// The driver settings a provider's config section gives.
pub fn driver_options(provider: &Provider, statsd: &Statsd) -> DriverOptions {
    let mut opts = DriverOptions::new(provider.name.clone());
    opts.region_name = provider.region_name.clone();
    opts.rate = provider.rate.as_secs_f64();
    opts.statsd = statsd.clone();
    opts
}
