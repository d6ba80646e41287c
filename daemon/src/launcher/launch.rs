//! Launching one server: a [`LaunchSpec`] (what the label and pool ask
//! for) is turned into a server by the [`LaunchMachine`], a state machine advanced by an
//! async driver loop ([`LaunchMachine::run`]):
//!
//! ```text
//! Start ─► ServerCreating ─► WaitingActive ─► FloatingIp ─► AttachingFloatingIp ─► KeyScanning ─► Complete
//!   │            │                 │               │                │                    │
//!   └────────────┴─────────────────┴───────────────┴────────────────┴────────────────────┴──► Failed
//! ```
//!
//! As in Nodepool 11: `launch-timeout` (default 3600 s) bounds the whole attempt from its
//! start — waiting for `ACTIVE` included, and checked while the host-key scan runs —
//! (`error.servercreatetimeout`); `boot-timeout` (default 60 s) is the deadline of the SSH
//! host-key scan ([`KeyscanSpec`], `error.keyscan`), which starts once the server is
//! `ACTIVE` and its floating IP attached. Polls back off ([`Backoff`]); each API call is
//! bounded by the driver's own call timeout. The result is the [`InstanceFacts`] to store
//! on the node, with the addresses openstacksdk would report
//! ([`nodepool_shared::cloud::addresses`]). Retries across attempts are
//! [`super::retry`]'s job. Flavors, images and networks come from the provider's
//! [`CloudLookups`] when the machine has them (a 400 from Nova on the create makes it
//! forget them all), else are listed once per attempt. An attempt given a stop token
//! ([`LaunchMachine::stop_on`]) ends with [`LaunchError::Stopped`] at the next step after
//! it is cancelled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use nodepool_shared::cloud::addresses::needs_floating_ip;
use nodepool_shared::cloud::{
    server_ips, CloudDriver, CloudError, CreateServer, Flavor, Network, Server, ServerIps,
};
use nodepool_shared::model::{Node, QuotaInformation};
use nodepool_shared::ssh::{scan_host_keys, KeyscanError, ScanOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::failure::LaunchError;
use super::lookups::{CloudLookups, FlavorSpec};

/// Lines of console log fetched after a failure when the label has `console-log`.
pub const CONSOLE_LOG_LINES: u32 = 200;

/// The image to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// A cloud image id (`image-id`, or an upload's external id): used as is.
    Id(String),
    /// A cloud image name (`image-name` / cloud-image name): looked up first.
    Name(String),
}

impl Default for ImageRef {
    fn default() -> Self {
        ImageRef::Id(String::new())
    }
}

/// The host-key scan after boot (label `host-key-checking`; only for
/// `connection-type` `ssh` and `network_cli`; its deadline is the provider's `boot-timeout`).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyscanSpec {
    /// `connection-port` of the image.
    pub port: u16,
    /// Gather host keys (`connection-type` `ssh` / `network_cli`); otherwise only wait
    /// until the port answers.
    pub gather_keys: bool,
    /// Per connect/read/write bound.
    pub io_timeout: Duration,
}

impl KeyscanSpec {
    /// Scan `port`, gathering keys for `connection_type` `ssh`/`network_cli`.
    pub fn new(port: u16, connection_type: &str) -> Self {
        KeyscanSpec {
            port,
            gather_keys: matches!(connection_type, "ssh" | "network_cli"),
            io_timeout: ScanOptions::default().io_timeout,
        }
    }
}

/// Everything one launch needs (mapped from the provider, pool, label and image config).
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchSpec {
    /// Server name, `np<node id>` ([`super::metadata::server_name`]).
    pub name: String,
    pub flavor: FlavorSpec,
    pub image: ImageRef,
    pub key_name: Option<String>,
    /// Network names or ids (label `networks`, else pool `networks`); empty = cloud default.
    pub networks: Vec<String>,
    pub security_groups: Vec<String>,
    pub availability_zone: Option<String>,
    /// Instance metadata ([`super::metadata::build_metadata`]).
    pub metadata: BTreeMap<String, String>,
    pub userdata: Option<String>,
    pub config_drive: Option<bool>,
    pub boot_from_volume: bool,
    /// `volume-size` in GB (Nodepool default 50).
    pub volume_size: u64,
    /// Pool `auto-floating-ip` (default true).
    pub auto_floating_ip: bool,
    /// Provider `boot-timeout` (default 60 s): the host-key scan's deadline.
    pub boot_timeout: Duration,
    /// Provider `launch-timeout` (default 3600 s): the whole attempt (waiting for
    /// `ACTIVE` included).
    pub launch_timeout: Duration,
    /// Scan the server's SSH host keys before it is ready (`None`: label
    /// `host-key-checking: false`).
    pub keyscan: Option<KeyscanSpec>,
    /// Label `console-log`: fetch the console after a failure.
    pub console_log: bool,
    /// The provider's cloud name (node `cloud`).
    pub cloud: Option<String>,
    /// The provider's region (node `region`).
    pub region: Option<String>,
    /// Polling intervals.
    pub poll: Backoff,
}

impl Default for LaunchSpec {
    /// Nodepool's defaults: volume 50 GB, auto floating IP, boot 60 s, launch 3600 s.
    fn default() -> Self {
        LaunchSpec {
            name: String::new(),
            flavor: FlavorSpec::default(),
            image: ImageRef::default(),
            key_name: None,
            networks: Vec::new(),
            security_groups: Vec::new(),
            availability_zone: None,
            metadata: BTreeMap::new(),
            userdata: None,
            config_drive: None,
            boot_from_volume: false,
            volume_size: 50,
            auto_floating_ip: true,
            boot_timeout: Duration::from_secs(60),
            launch_timeout: Duration::from_secs(3600),
            keyscan: None,
            console_log: false,
            cloud: None,
            region: None,
            poll: Backoff::default(),
        }
    }
}

impl LaunchSpec {
    /// The label's quota need for `flavor` (1 instance, cores, RAM, plus one volume of
    /// `volume-size` GB when booting from a volume).
    pub fn quota_for(&self, flavor: &Flavor) -> QuotaInformation {
        flavor.quota(self.boot_from_volume.then_some(self.volume_size))
    }
}

/// What a completed launch stores on the node. The addresses are empty strings where
/// the server has none, as Nodepool stores them.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceFacts {
    pub external_id: String,
    pub interface_ip: String,
    pub public_ipv4: String,
    pub private_ipv4: String,
    pub public_ipv6: String,
    pub host_id: Option<String>,
    pub az: Option<String>,
    pub cloud: Option<String>,
    pub region: Option<String>,
    /// The flavor's quota (node `resources`).
    pub resources: QuotaInformation,
    /// `"<type> <base64>"` per host key found by the scan (empty without one).
    pub host_keys: Vec<String>,
}

impl InstanceFacts {
    /// Facts of an `ACTIVE` server whose addresses are `ips`.
    pub fn from_server(
        server: &Server,
        spec: &LaunchSpec,
        resources: QuotaInformation,
        ips: ServerIps,
    ) -> Self {
        InstanceFacts {
            external_id: server.id.clone(),
            interface_ip: ips.interface_ip,
            public_ipv4: ips.public_ipv4,
            private_ipv4: ips.private_ipv4,
            public_ipv6: ips.public_ipv6,
            host_id: server.host_id.clone().filter(|h| !h.is_empty()),
            az: server
                .availability_zone
                .clone()
                .filter(|a| !a.is_empty())
                .or_else(|| spec.availability_zone.clone()),
            cloud: spec.cloud.clone(),
            region: spec.region.clone(),
            resources,
            host_keys: Vec::new(),
        }
    }

    /// Copies the facts onto a node record (the caller stores it).
    pub fn apply_to(&self, node: &mut Node) {
        node.external_id = Some(self.external_id.clone());
        node.interface_ip = Some(self.interface_ip.clone());
        node.public_ipv4 = Some(self.public_ipv4.clone());
        node.private_ipv4 = Some(self.private_ipv4.clone());
        node.public_ipv6 = Some(self.public_ipv6.clone());
        node.host_id = self.host_id.clone();
        node.az = self.az.clone();
        node.cloud = self.cloud.clone();
        node.region = self.region.clone();
        node.resources = Some(self.resources.to_resources());
        node.host_keys = self.host_keys.clone();
    }
}

/// Progress a caller stores on the node before the attempt ends: the server id as soon as
/// the cloud knows it, then the instance facts before the host-key scan (as Nodepool does).
#[derive(Clone, Debug, PartialEq)]
pub enum LaunchProgress {
    /// The cloud accepted the create: the server id.
    Created(String),
    /// The server is up and reachable (addresses known); the host-key scan starts now.
    Reachable(Box<InstanceFacts>),
}

/// Where a launch is.
#[derive(Debug)]
pub enum LaunchState {
    /// Nothing done yet: resolve flavor, image and networks.
    Start,
    /// Ready to submit the create call.
    ServerCreating { request: Box<CreateServer> },
    /// Created; polling until `ACTIVE` (or `ERROR`; `launch-timeout` bounds the wait).
    WaitingActive {
        server_id: String,
        last_status: String,
    },
    /// `ACTIVE` without a public address: allocate a floating IP on its port.
    FloatingIp { server: Box<Server> },
    /// Floating IP allocated; polling until the server shows it.
    AttachingFloatingIp { server_id: String, address: String },
    /// Reachable: scanning `interface_ip` for host keys until `deadline` (`boot-timeout`).
    KeyScanning {
        facts: Box<InstanceFacts>,
        deadline: Instant,
    },
    /// Done.
    Complete(Box<InstanceFacts>),
    /// Gave up.
    Failed(LaunchError),
}

impl LaunchState {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            LaunchState::Start => "start",
            LaunchState::ServerCreating { .. } => "creating server",
            LaunchState::WaitingActive { .. } => "waiting for active",
            LaunchState::FloatingIp { .. } => "creating floating ip",
            LaunchState::AttachingFloatingIp { .. } => "attaching floating ip",
            LaunchState::KeyScanning { .. } => "scanning host keys",
            LaunchState::Complete(_) => "complete",
            LaunchState::Failed(_) => "failed",
        }
    }

    /// True for `Complete` and `Failed`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, LaunchState::Complete(_) | LaunchState::Failed(_))
    }
}

/// The end of one attempt.
#[derive(Debug)]
pub struct LaunchOutcome {
    pub result: Result<InstanceFacts, LaunchError>,
    /// The server the attempt created, if any (also on failure: delete it).
    pub external_id: Option<String>,
    /// Console log fetched after a failure (label `console-log`).
    pub console_log: Option<String>,
    /// Launch duration (for the launch timers).
    pub elapsed: Duration,
}

/// What one [`LaunchMachine::advance`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Moved on; advance again right away.
    Progress,
    /// Nothing changed yet; poll again after a backoff.
    Wait,
}

/// One launch attempt.
pub struct LaunchMachine {
    spec: LaunchSpec,
    state: LaunchState,
    started: Instant,
    flavor: Option<Flavor>,
    networks: Option<Arc<Vec<Network>>>,
    external_id: Option<String>,
    console: Option<String>,
    progress: Option<mpsc::UnboundedSender<LaunchProgress>>,
    lookups: Option<Arc<CloudLookups>>,
    stop: Option<CancellationToken>,
}

impl LaunchMachine {
    /// A fresh attempt; the launch-timeout clock starts now.
    pub fn new(spec: LaunchSpec) -> Self {
        LaunchMachine {
            spec,
            state: LaunchState::Start,
            started: Instant::now(),
            flavor: None,
            networks: None,
            external_id: None,
            console: None,
            progress: None,
            lookups: None,
            stop: None,
        }
    }

    /// Ends the attempt with [`LaunchError::Stopped`] at its next step once `stop` is
    /// cancelled (a step under way, such as a server create, finishes first, so the
    /// server it made is known and can be deleted).
    pub fn stop_on(mut self, stop: CancellationToken) -> Self {
        self.stop = Some(stop);
        self
    }

    fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.is_cancelled())
    }

    /// Sleeps `d`, or less when told to stop.
    async fn pause(&self, d: Duration) {
        match &self.stop {
            Some(stop) => {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(d) => {}
                }
            }
            None => tokio::time::sleep(d).await,
        }
    }

    /// Looks flavors, images and networks up through the provider's caches (and makes
    /// them forget everything when Nova answers the create with 400).
    pub fn with_lookups(mut self, lookups: Arc<CloudLookups>) -> Self {
        self.lookups = Some(lookups);
        self
    }

    /// Sends [`LaunchProgress`] on `progress`: the server id as soon as the cloud accepted
    /// the create, and the instance facts before the host-key scan, so the caller can
    /// store them on the node before the launch ends.
    pub fn report_progress(mut self, progress: mpsc::UnboundedSender<LaunchProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Uses an already resolved flavor (from the caller's flavor cache).
    pub fn with_flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = Some(flavor);
        self
    }

    pub fn state(&self) -> &LaunchState {
        &self.state
    }

    pub fn spec(&self) -> &LaunchSpec {
        &self.spec
    }

    /// The server id as soon as the cloud accepted the create (store it on the node).
    pub fn external_id(&self) -> Option<&str> {
        self.external_id.as_deref()
    }

    /// The console log fetched after a failure (label `console-log`).
    pub fn console_log(&self) -> Option<&str> {
        self.console.as_deref()
    }

    /// The flavor's quota, once the flavor is known.
    pub fn resources(&self) -> Option<QuotaInformation> {
        self.flavor.as_ref().map(|f| self.spec.quota_for(f))
    }

    fn fail(&mut self, e: LaunchError) -> Step {
        self.state = LaunchState::Failed(e);
        Step::Progress
    }

    /// When this attempt runs out of `launch-timeout`.
    pub fn deadline(&self) -> Instant {
        self.started + self.spec.launch_timeout
    }

    /// Drives the attempt to its end: advance, back off while waiting, enforce
    /// `launch-timeout` (checked between steps). Callers that must store the server id as
    /// soon as it is known drive [`advance`](Self::advance) themselves instead.
    pub async fn run(mut self, cloud: &dyn CloudDriver) -> LaunchOutcome {
        let deadline = self.deadline();
        let mut backoff = self.spec.poll.clone();
        while !self.state.is_terminal() {
            if self.stop_requested() {
                self.state = LaunchState::Failed(LaunchError::Stopped {
                    server_id: self.external_id.clone(),
                });
                break;
            }
            if Instant::now() >= deadline {
                self.state = LaunchState::Failed(LaunchError::LaunchTimeout {
                    server_id: self.external_id.clone(),
                    timeout: self.spec.launch_timeout,
                });
                break;
            }
            let before = self.state.name();
            match self.advance(cloud).await {
                Step::Progress => {
                    backoff.reset();
                    tracing::debug!(server = %self.spec.name, from = before, to = self.state.name(), "launch advanced");
                }
                Step::Wait => self.pause(backoff.next_before(deadline)).await,
            }
        }
        let result = match std::mem::replace(&mut self.state, LaunchState::Start) {
            LaunchState::Complete(facts) => Ok(*facts),
            LaunchState::Failed(e @ LaunchError::Stopped { .. }) => Err(e),
            LaunchState::Failed(e) => {
                self.fetch_console(cloud, &e).await;
                Err(e)
            }
            other => Err(LaunchError::Internal(format!(
                "launch loop ended in state {}",
                other.name()
            ))),
        };
        LaunchOutcome {
            result,
            external_id: self.external_id,
            console_log: self.console,
            elapsed: self.started.elapsed(),
        }
    }

    async fn fetch_console(&mut self, cloud: &dyn CloudDriver, e: &LaunchError) {
        if !self.spec.console_log {
            return;
        }
        let Some(id) = e.server_id().or(self.external_id.as_deref()) else {
            return;
        };
        match cloud.console_output(id, Some(CONSOLE_LOG_LINES)).await {
            Ok(log) => {
                tracing::info!(server = %id, "console log of failed launch:\n{log}");
                self.console = Some(log);
            }
            Err(err) => tracing::warn!(server = %id, error = %err, "cannot fetch console log"),
        }
    }

    /// Performs at most one step (one or a few API calls).
    pub async fn advance(&mut self, cloud: &dyn CloudDriver) -> Step {
        match std::mem::replace(&mut self.state, LaunchState::Start) {
            LaunchState::Start => match self.prepare(cloud).await {
                Ok(request) => {
                    self.state = LaunchState::ServerCreating {
                        request: Box::new(request),
                    };
                    Step::Progress
                }
                Err(e) => self.fail(e),
            },
            LaunchState::ServerCreating { request } => match cloud.create_server(&request).await {
                Ok(created) => {
                    self.external_id = Some(created.id.clone());
                    if let Some(tx) = &self.progress {
                        // The receiver may be gone (caller not interested any more).
                        let _ = tx.send(LaunchProgress::Created(created.id.clone()));
                    }
                    self.state = LaunchState::WaitingActive {
                        server_id: created.id,
                        last_status: "BUILD".into(),
                    };
                    Step::Progress
                }
                Err(e) => {
                    if let (Some(l), true) = (&self.lookups, is_bad_request(&e)) {
                        l.forget_after_bad_request();
                    }
                    self.fail(LaunchError::cloud("create server", e, None))
                }
            },
            LaunchState::WaitingActive {
                server_id,
                last_status,
            } => self.poll_active(cloud, server_id, last_status).await,
            LaunchState::KeyScanning { facts, deadline } => self.scan(*facts, deadline).await,
            LaunchState::FloatingIp { server } => self.create_floating_ip(cloud, *server).await,
            LaunchState::AttachingFloatingIp { server_id, address } => {
                match cloud.get_server(&server_id).await {
                    Ok(Some(s)) if s.floating_ipv4().as_deref() == Some(address.as_str()) => {
                        self.networks_or_none(cloud).await;
                        self.complete_with(cloud, &s)
                    }
                    Ok(Some(_)) => {
                        self.state = LaunchState::AttachingFloatingIp { server_id, address };
                        Step::Wait
                    }
                    Ok(None) => self.fail(LaunchError::ServerVanished { server_id }),
                    Err(e) if e.is_retryable() => {
                        self.state = LaunchState::AttachingFloatingIp { server_id, address };
                        Step::Wait
                    }
                    Err(e) => self.fail(LaunchError::cloud("refresh server", e, Some(&server_id))),
                }
            }
            terminal @ (LaunchState::Complete(_) | LaunchState::Failed(_)) => {
                self.state = terminal;
                Step::Wait
            }
        }
    }

    /// Resolves flavor, image and networks into a create request.
    async fn prepare(&mut self, cloud: &dyn CloudDriver) -> Result<CreateServer, LaunchError> {
        if self.flavor.is_none() {
            let found = match &self.lookups {
                Some(l) => l.flavor(cloud, &self.spec.flavor).await,
                None => cloud.find_flavor(self.spec.flavor.wanted()).await,
            };
            let f = found
                .map_err(|e| LaunchError::cloud("find flavor", e, None))?
                .ok_or_else(|| LaunchError::FlavorNotFound {
                    wanted: self.spec.flavor.to_string(),
                })?;
            self.flavor = Some(f);
        }
        let flavor_id = self
            .flavor
            .as_ref()
            .map(|f| f.id.clone())
            .unwrap_or_default();
        let image_id = match &self.spec.image {
            ImageRef::Id(id) => id.clone(),
            ImageRef::Name(name) => {
                let found = match &self.lookups {
                    Some(l) => l.image_id(cloud, name).await,
                    None => cloud.find_image(name).await.map(|i| i.map(|i| i.id)),
                };
                found
                    .map_err(|e| LaunchError::cloud("find image", e, None))?
                    .ok_or_else(|| LaunchError::ImageNotFound(name.clone()))?
            }
        };
        let mut network_ids = Vec::with_capacity(self.spec.networks.len());
        if !self.spec.networks.is_empty() {
            let wanted_networks = self.spec.networks.clone();
            let nets = self.networks(cloud).await?;
            for wanted in &wanted_networks {
                let id = nets
                    .iter()
                    .find(|n| &n.id == wanted)
                    .or_else(|| nets.iter().find(|n| &n.name == wanted))
                    .map(|n| n.id.clone())
                    .ok_or_else(|| LaunchError::NetworkNotFound(wanted.clone()))?;
                network_ids.push(id);
            }
        }
        Ok(CreateServer {
            name: self.spec.name.clone(),
            flavor_id,
            image_id,
            key_name: self.spec.key_name.clone(),
            networks: network_ids,
            metadata: self.spec.metadata.clone(),
            availability_zone: self.spec.availability_zone.clone(),
            user_data: self.spec.userdata.clone(),
            config_drive: self.spec.config_drive,
            boot_from_volume: self.spec.boot_from_volume,
            volume_size: self.spec.boot_from_volume.then_some(self.spec.volume_size),
            security_groups: self.spec.security_groups.clone(),
        })
    }

    /// The cloud's networks (from the provider's cache, else listed once per attempt).
    async fn networks(&mut self, cloud: &dyn CloudDriver) -> Result<&[Network], LaunchError> {
        if self.networks.is_none() {
            let n = match &self.lookups {
                Some(l) => l.networks(cloud).await,
                None => cloud.list_networks().await.map(Arc::new),
            }
            .map_err(|e| LaunchError::cloud("list networks", e, None))?;
            self.networks = Some(n);
        }
        Ok(self
            .networks
            .as_deref()
            .map(Vec::as_slice)
            .unwrap_or_default())
    }

    /// The networks for reading a server's addresses; a failed listing leaves them
    /// unknown (openstacksdk then falls back on network names), logged.
    async fn networks_or_none(&mut self, cloud: &dyn CloudDriver) {
        if let Err(e) = self.networks(cloud).await {
            tracing::warn!(server = %self.spec.name, error = %e,
                "cannot list networks; reading addresses without them");
        }
    }

    /// The server's node addresses under the cloud's address policy.
    fn ips(&self, cloud: &dyn CloudDriver, server: &Server) -> ServerIps {
        let nets = self
            .networks
            .as_deref()
            .map(Vec::as_slice)
            .unwrap_or_default();
        server_ips(server, nets, &cloud.address_policy())
    }

    async fn poll_active(
        &mut self,
        cloud: &dyn CloudDriver,
        server_id: String,
        last_status: String,
    ) -> Step {
        let server = match cloud.get_server(&server_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return self.fail(LaunchError::ServerVanished { server_id }),
            Err(e) if e.is_retryable() => {
                self.state = LaunchState::WaitingActive {
                    server_id,
                    last_status,
                };
                return Step::Wait;
            }
            Err(e) => return self.fail(LaunchError::cloud("refresh server", e, Some(&server_id))),
        };
        match server.status.as_str() {
            "ACTIVE" => {
                self.networks_or_none(cloud).await;
                if self.spec.auto_floating_ip && self.needs_floating_ip(cloud, &server) {
                    self.state = LaunchState::FloatingIp {
                        server: Box::new(server),
                    };
                    Step::Progress
                } else {
                    self.complete_with(cloud, &server)
                }
            }
            "ERROR" => {
                let fault = server.fault_message().map(str::to_string);
                if server.has_quota_fault() {
                    self.fail(LaunchError::Quota {
                        server_id: Some(server_id),
                        message: fault.unwrap_or_default(),
                    })
                } else {
                    self.fail(LaunchError::ServerError { server_id, fault })
                }
            }
            status => {
                self.state = LaunchState::WaitingActive {
                    server_id,
                    last_status: status.to_string(),
                };
                Step::Wait
            }
        }
    }

    /// openstacksdk's rule ([`needs_floating_ip`]); unknown networks (a failed
    /// listing) count as "no floating IPs".
    fn needs_floating_ip(&self, cloud: &dyn CloudDriver, server: &Server) -> bool {
        let has_external = self
            .networks
            .as_ref()
            .is_some_and(|n| n.iter().any(|n| n.external));
        let ips = self.ips(cloud, server);
        needs_floating_ip(server, &ips, has_external, &cloud.address_policy())
    }

    async fn create_floating_ip(&mut self, cloud: &dyn CloudDriver, server: Server) -> Step {
        let server_id = server.id.clone();
        let fip_err = |detail: String| LaunchError::FloatingIp {
            server_id: server_id.clone(),
            detail,
        };
        let external = match self.networks(cloud).await {
            Ok(nets) => nets.iter().find(|n| n.external).map(|n| n.id.clone()),
            Err(e) => return self.fail(e),
        };
        let Some(external) = external else {
            let e = fip_err("no external network".into());
            return self.fail(e);
        };
        let ports = match cloud.server_ports(&server_id).await {
            Ok(p) => p,
            Err(e) => {
                return self.fail(LaunchError::cloud("list server ports", e, Some(&server_id)))
            }
        };
        let Some(port) = ports.first() else {
            let e = fip_err("server has no port".into());
            return self.fail(e);
        };
        match cloud.create_floating_ip(&external, Some(&port.id)).await {
            Ok(fip) => {
                self.state = LaunchState::AttachingFloatingIp {
                    server_id,
                    address: fip.floating_ip_address,
                };
                Step::Progress
            }
            Err(e) => self.fail(LaunchError::cloud(
                "create floating ip",
                e,
                Some(&server_id),
            )),
        }
    }

    /// The server is up (and reachable): scan its host keys, or done.
    fn complete_with(&mut self, cloud: &dyn CloudDriver, server: &Server) -> Step {
        let resources = self.resources().unwrap_or_default();
        let ips = self.ips(cloud, server);
        let facts = Box::new(InstanceFacts::from_server(
            server, &self.spec, resources, ips,
        ));
        self.state = if self.spec.keyscan.is_some() {
            if let Some(tx) = &self.progress {
                let _ = tx.send(LaunchProgress::Reachable(facts.clone()));
            }
            LaunchState::KeyScanning {
                facts,
                deadline: Instant::now() + self.spec.boot_timeout,
            }
        } else {
            LaunchState::Complete(facts)
        };
        Step::Progress
    }

    /// Scans until the port answers, `deadline` (`boot-timeout` → `error.keyscan`) or the
    /// launch deadline (→ `error.servercreatetimeout`), whichever comes first.
    async fn scan(&mut self, mut facts: InstanceFacts, deadline: Instant) -> Step {
        let Some(ks) = self.spec.keyscan.clone() else {
            self.state = LaunchState::Complete(Box::new(facts));
            return Step::Progress;
        };
        let server_id = facts.external_id.clone();
        let ip = facts.interface_ip.clone();
        if ip.is_empty() {
            return self.fail(LaunchError::Keyscan {
                server_id,
                detail: "the server has no interface IP to scan (no public address; \
                         clouds.yaml `private: true` uses the private one)"
                    .into(),
            });
        }
        let launch_deadline = self.deadline();
        let opts = ScanOptions {
            io_timeout: ks.io_timeout,
            key_types: if ks.gather_keys {
                ScanOptions::default().key_types
            } else {
                Vec::new()
            },
            ..ScanOptions::default()
        };
        match scan_host_keys(&ip, ks.port, deadline.min(launch_deadline), &opts).await {
            Ok(keys) => {
                tracing::debug!(server = %server_id, %ip, keys = keys.len(), "host keys scanned");
                facts.host_keys = keys;
                self.state = LaunchState::Complete(Box::new(facts));
                Step::Progress
            }
            Err(KeyscanError::Timeout { .. }) if launch_deadline <= deadline => {
                self.fail(LaunchError::LaunchTimeout {
                    server_id: Some(server_id),
                    timeout: self.spec.launch_timeout,
                })
            }
            Err(e) => self.fail(LaunchError::Keyscan {
                server_id,
                detail: e.to_string(),
            }),
        }
    }
}

/// Nova's 400 (a malformed request: most likely a stale zone, flavor, image or network).
fn is_bad_request(e: &CloudError) -> bool {
    matches!(e, CloudError::Http { status: 400, .. })
}

/// One launch attempt from start to end ([`LaunchMachine::run`]).
pub async fn launch_server(cloud: &dyn CloudDriver, spec: LaunchSpec) -> LaunchOutcome {
    LaunchMachine::new(spec).run(cloud).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use nodepool_shared::cloud::ServerAddress;

    fn addr(a: &str, kind: &str) -> ServerAddress {
        ServerAddress {
            addr: a.into(),
            version: Some(if a.contains(':') { 6 } else { 4 }),
            kind: Some(kind.into()),
            mac_addr: None,
        }
    }

    #[test]
    fn facts_from_server() {
        let s = Server {
            id: "srv".into(),
            status: "ACTIVE".into(),
            addresses: vec![(
                "private".to_string(),
                vec![addr("10.0.0.5", "fixed"), addr("2001:db8::5", "fixed")],
            )],
            host_id: Some("h".into()),
            availability_zone: Some("nova".into()),
            ..Default::default()
        };
        let spec = LaunchSpec {
            cloud: Some("c".into()),
            region: Some("r".into()),
            ..Default::default()
        };
        let policy = nodepool_shared::cloud::AddressPolicy {
            local_ipv6: true,
            ..Default::default()
        };
        let ips = server_ips(&s, &[], &policy);
        let f = InstanceFacts::from_server(&s, &spec, QuotaInformation::usage(), ips);
        assert_eq!(f.private_ipv4, "10.0.0.5");
        assert_eq!(f.public_ipv4, "");
        assert_eq!(f.public_ipv6, "2001:db8::5");
        assert_eq!(f.interface_ip, "2001:db8::5");
        let mut node = Node::default();
        f.apply_to(&mut node);
        assert_eq!(node.public_ipv4.as_deref(), Some(""));
        assert_eq!(node.external_id.as_deref(), Some("srv"));
        assert_eq!(node.az.as_deref(), Some("nova"));
        assert_eq!(node.region.as_deref(), Some("r"));
        assert!(node.resources.is_some());
    }
}
