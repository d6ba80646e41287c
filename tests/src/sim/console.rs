//! The console log a simulated server answers to Nova's `os-getConsoleOutput`: a
//! plausible boot log made from the server's own facts (name, id, flavor, addresses),
//! with what a real serial console contains — colour escape sequences, `\r\n` line
//! ends, a tab — so clients that show it must clean it up. A server still booting has
//! only the kernel's first lines; a server in `ERROR` ends in a kernel panic with its
//! fault. `length` keeps the last lines, as Nova does.

use super::state::{Server, ServerStatus, World};

/// The whole log of `server` (its `status` as the API reports it now).
fn full_log(w: &World, s: &Server, status: ServerStatus) -> Vec<String> {
    let ips: Vec<String> = s
        .port_ids
        .iter()
        .filter_map(|p| w.port(p))
        .flat_map(|p| p.fixed_ips.iter().map(|f| f.ip_address.clone()))
        .collect();
    let ip = ips.first().cloned().unwrap_or_else(|| "-".into());
    let mut log = vec![
        "[    0.000000] Linux version 6.1.0-sim (openstack-sim@build) (gcc 12.2.0) #1 SMP PREEMPT_DYNAMIC".to_string(),
        "[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz root=LABEL=cloudimg-rootfs ro console=tty1 console=ttyS0".into(),
        "[    0.004000] DMI: OpenStack Foundation OpenStack Nova, BIOS 1.16.3 04/01/2014".into(),
        "[    0.004000] Hypervisor detected: KVM".into(),
        format!("[    0.121000] Memory: {}K/{}K available", s.flavor.ram * 1000, s.flavor.ram * 1024),
        format!("[    0.250000] smp: Brought up 1 node, {} CPUs", s.flavor.vcpus),
        "[    0.602000] virtio_blk virtio2: [vda] 20971520 512-byte logical blocks".into(),
        "[    0.731000] EXT4-fs (vda1): mounted filesystem with ordered data mode".into(),
    ];
    match status {
        ServerStatus::Build => return log,
        ServerStatus::Error => {
            let why = s
                .fault
                .as_ref()
                .map_or("no fault recorded".to_string(), |f| f.message.clone());
            log.push(format!(
                "[    1.020000] nova: instance {} failed: {why}",
                s.id
            ));
            log.push("[    1.021000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)".into());
            return log;
        }
        ServerStatus::Active => {}
    }
    let ok = |what: &str| format!("[\u{1b}[0;32m  OK  \u{1b}[0m] {what}");
    log.extend([
        ok("Started systemd-journald.service - Journal Service."),
        ok("Reached target network-pre.target - Preparation for Network."),
        format!(
            "[    3.411000] cloud-init[412]: Cloud-init v. 23.4 running 'init' at {}. Up 3.41 seconds.",
            s.created
        ),
        "[    3.420000] cloud-init[412]: ci-info: ++++++++++++++++++++++Net device info++++++++++++++++++++++".into(),
        format!("[    3.421000] cloud-init[412]: ci-info: | eth0\t| True | {ip} | 255.255.0.0 |"),
        format!("[    3.500000] cloud-init[412]: hostname set to {}", s.name),
        "[    4.102000] cloud-init[412]: Generating public/private ed25519 key pair.".into(),
        ok("Started ssh.service - OpenBSD Secure Shell server."),
        ok("Reached target multi-user.target - Multi-User System."),
        "-----BEGIN SSH HOST KEY FINGERPRINTS-----".into(),
        format!("256 SHA256:{} root@{} (ED25519)", &s.host_id, s.name),
        "-----END SSH HOST KEY FINGERPRINTS-----".into(),
        format!(
            "[    5.002000] cloud-init[790]: Cloud-init v. 23.4 finished. Datasource DataSourceOpenStack. Up 5.00 seconds ({})",
            s.id
        ),
        String::new(),
        format!("Ubuntu 24.04 LTS {} ttyS0", s.name),
        String::new(),
        format!("{} login: ", s.name),
    ]);
    log
}

/// The reply text: the last `length` lines (all when `None` or negative), lines ended
/// by `\r\n` as a serial console writes them.
pub fn console_output(w: &World, s: &Server, status: ServerStatus, length: Option<i64>) -> String {
    let log = full_log(w, s, status);
    let keep = match length {
        Some(n) if n >= 0 => (n as usize).min(log.len()),
        _ => log.len(),
    };
    let mut out = String::new();
    for line in &log[log.len() - keep..] {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}
