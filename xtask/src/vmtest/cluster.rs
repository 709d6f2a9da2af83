//! The cluster side of a guest: the userland packages (busybox, corosync,
//! dlm_controld) unpacked from Debian's `.deb`s, the cluster stack put in
//! the initramfs with its configuration (corosync over knet on IPv6, the
//! nodes as `fd00::<n>` named `node<n>`), and the link between the two
//! nodes of a two-node run: a qemu `-netdev dgram` pair over UNIX sockets,
//! so no host networking is needed.

use super::Result;
use super::initramfs::Initramfs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cluster programs a corosync guest gets, from `/usr/sbin` of the
/// packages.
const PROGRAMS: [&str; 6] = [
    "corosync",
    "corosync-quorumtool",
    "corosync-cfgtool",
    "corosync-cmapctl",
    "dlm_controld",
    "dlm_tool",
];

/// dlm_controld's configuration: TCP between the nodes, no fencing.
const DLM_CONF: &str = "protocol=tcp\nenable_fencing=0\nenable_startup_fencing=0\nlog_debug=1\n";

/// The unpacked userland packages.
pub(super) struct Userland {
    pub(super) roots: Vec<PathBuf>,
}

impl Userland {
    pub(super) fn find(&self, rel: &str) -> Result<PathBuf> {
        for r in &self.roots {
            for cand in [rel.to_string(), format!("usr/{rel}")] {
                let p = r.join(&cand);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        Err(format!("vmtest: {rel} not found in the unpacked packages"))
    }
}

/// `/etc/hosts` of a guest: localhost and every node's address.
pub(super) fn hosts(nodes: u32) -> String {
    let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for n in 1..=nodes {
        hosts += &format!("fd00::{n} node{n}\n");
    }
    hosts
}

/// Puts corosync, dlm_controld and their tools (with the libraries from
/// the packages) and their configuration for `nodes` nodes in the guest.
pub(super) fn add_corosync(ir: &mut Initramfs, ul: &Userland, nodes: u32) -> Result<()> {
    for b in PROGRAMS {
        let host = ul.find(&format!("sbin/{b}"))?;
        ir.program(&format!("/usr/sbin/{b}"), &host, &ul.roots)?;
    }
    ir.bytes("/etc/corosync/corosync.conf", corosync_conf(nodes), 0o644);
    ir.bytes("/etc/dlm/dlm.conf", DLM_CONF, 0o644);
    Ok(())
}

fn corosync_conf(nodes: u32) -> String {
    let mut s = String::from(
        "totem {\n    version: 2\n    cluster_name: vmtest\n    transport: knet\n    ip_version: ipv6\n    \
         crypto_cipher: none\n    crypto_hash: none\n}\nnodelist {\n",
    );
    for n in 1..=nodes {
        s += &format!(
            "    node {{\n        ring0_addr: fd00::{n}\n        name: node{n}\n        nodeid: {n}\n    }}\n"
        );
    }
    s += "}\nquorum {\n    provider: corosync_votequorum\n";
    if nodes == 2 {
        s += "    two_node: 1\n";
    }
    s += "}\nlogging {\n    to_stderr: yes\n    to_logfile: no\n    to_syslog: no\n    timestamp: on\n}\n";
    s
}

/// The qemu options for the link of `node` (1 or 2) to the other node of
/// a two-node run: a datagram pair of UNIX sockets in `sockdir`, and a
/// virtio NIC with a MAC address per node.
pub(super) fn add_link(cmd: &mut Command, sockdir: &Path, node: u32) {
    let peer = 3 - node;
    let sock = |n: u32| sockdir.join(format!("n{n}.sock")).display().to_string();
    cmd.arg("-netdev").arg(format!(
        "dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
        sock(node),
        sock(peer)
    ));
    cmd.arg("-device").arg(format!(
        "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:{node:02x},romfile="
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_nodes_name_each_other() {
        assert_eq!(
            hosts(2),
            "127.0.0.1 localhost\n::1 localhost\nfd00::1 node1\nfd00::2 node2\n"
        );
        let conf = corosync_conf(2);
        assert!(conf.contains("ring0_addr: fd00::2\n        name: node2\n        nodeid: 2"));
        assert!(conf.contains("two_node: 1"));
        assert!(!corosync_conf(1).contains("two_node"));
        let mut cmd = Command::new("qemu-system-x86_64");
        add_link(&mut cmd, Path::new("/s"), 2);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args,
            [
                "-netdev",
                "dgram,id=n0,local.type=unix,local.path=/s/n2.sock,remote.type=unix,remote.path=/s/n1.sock",
                "-device",
                "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:02,romfile=",
            ]
        );
    }
}
