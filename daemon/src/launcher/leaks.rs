//! Leaked-resource cleanup for one OpenStack provider, run by the
//! CleanupWorker about every 60 s.
//!
//! * Instances: a server whose metadata names this provider but a `nodepool_node_id`
//!   that is not known is a *possible* leak; it is deleted only when it was already a
//!   possible leak on the previous pass (two consecutive passes), then
//!   `nodepool.provider.<p>.leaked.instances` += 1.
//! * Ports (`port-cleanup-interval` > 0): DOWN ports owned by compute (or nobody) are
//!   sampled; ports DOWN in two samples at least the interval apart are deleted, then
//!   `nodepool.provider.<p>.leaked.ports` += number removed.
//! * Floating IPs (`clean-floating-ips`): unattached ones are deleted (openstacksdk's
//!   `delete_unattached_floating_ips`), then `nodepool.provider.<p>.leaked.floatingips`
//!   += number removed.
//!
//! Every deleted instance, port and floating IP is logged (id, and the address of a
//! floating IP). Each part runs even if another failed; failures are reported in the
//! pass report.

use std::collections::HashSet;
use std::time::Duration;

use nodepool_shared::cloud::{CloudDriver, CloudError, PortFilter};
use nodepool_shared::stats::{names, Statsd};
use tokio::time::Instant;

use super::metadata::{NODE_ID, PROVIDER_NAME};
use super::quota::KnownNodes;

/// Nodepool's default `port-cleanup-interval`.
pub const DEFAULT_PORT_CLEANUP_INTERVAL: Duration = Duration::from_secs(600);

/// Provider settings for leak cleanup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeakSettings {
    pub provider: String,
    /// `port-cleanup-interval`; zero disables port cleanup.
    pub port_cleanup_interval: Duration,
    /// `clean-floating-ips` (unset = off, as in Nodepool's code).
    pub clean_floating_ips: bool,
}

impl LeakSettings {
    /// Nodepool's defaults: ports every 600 s, floating IPs off.
    pub fn new(provider: impl Into<String>) -> Self {
        LeakSettings {
            provider: provider.into(),
            port_cleanup_interval: DEFAULT_PORT_CLEANUP_INTERVAL,
            clean_floating_ips: false,
        }
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct LeakPassReport {
    /// Leaked servers deleted (seen leaked on two consecutive passes).
    pub instances: usize,
    /// Servers seen leaked for the first time (deleted next pass if still leaked).
    pub suspected_instances: usize,
    /// DOWN ports deleted.
    pub ports: usize,
    /// Unattached floating IPs deleted.
    pub floating_ips: usize,
    /// Calls that failed (the pass went on).
    pub errors: Vec<CloudError>,
}

/// The DOWN-port sample of the previous pass.
struct PortSample {
    at: Instant,
    ids: HashSet<String>,
}

/// Leak detection state of one provider, kept across passes.
pub struct LeakCleaner {
    settings: LeakSettings,
    statsd: Statsd,
    suspects: HashSet<String>,
    ports: Option<PortSample>,
}

impl LeakCleaner {
    pub fn new(settings: LeakSettings, statsd: Statsd) -> Self {
        LeakCleaner {
            settings,
            statsd,
            suspects: HashSet::new(),
            ports: None,
        }
    }

    pub fn settings(&self) -> &LeakSettings {
        &self.settings
    }

    /// One cleanup pass. `known_node_ids`: ids of every ZooKeeper node of this provider.
    pub async fn pass(
        &mut self,
        cloud: &dyn CloudDriver,
        known_node_ids: &dyn KnownNodes,
    ) -> LeakPassReport {
        let mut report = LeakPassReport::default();
        self.instances(cloud, known_node_ids, &mut report).await;
        if !self.settings.port_cleanup_interval.is_zero() {
            self.down_ports(cloud, &mut report).await;
        }
        if self.settings.clean_floating_ips {
            self.floating_ips(cloud, &mut report).await;
        }
        report
    }

    /// Deletes every floating IP not attached to a port, logging each.
    async fn floating_ips(&mut self, cloud: &dyn CloudDriver, report: &mut LeakPassReport) {
        let fips = match cloud.list_floating_ips().await {
            Ok(f) => f,
            Err(e) => {
                report.errors.push(e);
                return;
            }
        };
        let provider = &self.settings.provider;
        for fip in fips.into_iter().filter(|f| !f.is_attached()) {
            tracing::info!(%provider, floating_ip = %fip.id, address = %fip.floating_ip_address,
                "deleting leaked floating IP");
            match cloud.delete_floating_ip(&fip.id).await {
                Ok(()) => report.floating_ips += 1,
                Err(e) => report.errors.push(e),
            }
        }
        if report.floating_ips > 0 {
            tracing::info!(%provider, count = report.floating_ips, "removed unattached floating IPs");
            self.statsd.count(
                &names::leaked(provider, "floatingips"),
                report.floating_ips as i64,
            );
        }
    }

    async fn instances(
        &mut self,
        cloud: &dyn CloudDriver,
        known: &dyn KnownNodes,
        report: &mut LeakPassReport,
    ) {
        let servers = match cloud.list_servers().await {
            Ok(s) => s,
            Err(e) => {
                report.errors.push(e);
                return;
            }
        };
        let mut still_suspect = HashSet::new();
        for s in servers {
            if s.status.eq_ignore_ascii_case("DELETED") {
                continue;
            }
            if s.metadata.get(PROVIDER_NAME) != Some(&self.settings.provider) {
                continue;
            }
            let Some(node_id) = s.metadata.get(NODE_ID).filter(|i| !i.is_empty()) else {
                continue;
            };
            if known.knows(node_id) {
                continue;
            }
            if !self.suspects.contains(&s.id) {
                tracing::info!(provider = %self.settings.provider, server = %s.id, node = %node_id, "possibly leaked instance");
                still_suspect.insert(s.id);
                report.suspected_instances += 1;
                continue;
            }
            tracing::info!(provider = %self.settings.provider, server = %s.id, node = %node_id, "deleting leaked instance");
            match cloud.delete_server(&s.id).await {
                Ok(()) => {
                    report.instances += 1;
                    self.statsd
                        .incr(&names::leaked(&self.settings.provider, "instances"));
                }
                Err(e) => {
                    // Try again next pass.
                    still_suspect.insert(s.id);
                    report.errors.push(e);
                }
            }
        }
        self.suspects = still_suspect;
    }

    async fn down_ports(&mut self, cloud: &dyn CloudDriver, report: &mut LeakPassReport) {
        if let Some(prev) = &self.ports {
            if prev.at.elapsed() < self.settings.port_cleanup_interval {
                return;
            }
        }
        let filter = PortFilter {
            status: Some("DOWN".into()),
            ..Default::default()
        };
        let ports = match cloud.list_ports(&filter).await {
            Ok(p) => p,
            Err(e) => {
                report.errors.push(e);
                return;
            }
        };
        let current: HashSet<String> = ports
            .into_iter()
            .filter(|p| p.status == "DOWN" && p.is_compute_owned())
            .map(|p| p.id)
            .collect();
        let Some(prev) = self.ports.take() else {
            self.ports = Some(PortSample {
                at: Instant::now(),
                ids: current,
            });
            return;
        };
        let mut remaining = current.clone();
        for id in current.intersection(&prev.ids) {
            match cloud.delete_port(id).await {
                Ok(()) => {
                    tracing::info!(provider = %self.settings.provider, port = %id, "removed DOWN port");
                    report.ports += 1;
                    remaining.remove(id);
                }
                Err(e) => report.errors.push(e),
            }
        }
        if report.ports > 0 {
            tracing::info!(provider = %self.settings.provider, count = report.ports, "removed DOWN ports");
            self.statsd.count(
                &names::leaked(&self.settings.provider, "ports"),
                report.ports as i64,
            );
        }
        self.ports = Some(PortSample {
            at: Instant::now(),
            ids: remaining,
        });
    }
}
