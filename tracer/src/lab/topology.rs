//! Throwaway topologies for labs: namespaces and veths that are removed when dropped.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Every namespace a lab creates starts with this, so `tracer lab cleanup` can find leftovers.
pub const PREFIX: &str = "tracer-lab-";

/// Runs a command line (split on spaces), failing with its stderr.
pub fn sh(line: &str) -> Result<String> {
    let mut words = line.split_whitespace();
    let program = words.next().context("empty command")?;
    let out = Command::new(program)
        .args(words)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A set of namespaces that exists for as long as this value does (unless kept), and the
/// commands that built it, to show the user.
pub struct Topology {
    namespaces: Vec<String>,
    pub commands: Vec<String>,
}

impl Topology {
    pub fn new() -> Topology {
        Topology {
            namespaces: Vec::new(),
            commands: Vec::new(),
        }
    }

    /// Runs a command line and records it among the commands a user would type.
    pub fn run(&mut self, line: &str) -> Result<String> {
        let out = sh(line)?;
        self.commands.push(line.to_string());
        Ok(out)
    }

    /// Runs a command line inside namespace `ns` (recorded).
    pub fn run_in(&mut self, ns: &str, line: &str) -> Result<String> {
        self.run(&format!("ip netns exec {ns} {line}"))
    }

    /// Creates namespace `PREFIX + short` with its loopback up; returns its full name.
    pub fn netns(&mut self, short: &str) -> Result<String> {
        let name = format!("{PREFIX}{short}");
        let _ = sh(&format!("ip netns del {name}"));
        self.run(&format!("ip netns add {name}"))?;
        self.namespaces.push(name.clone());
        sh(&format!("ip -n {name} link set lo up"))?;
        // No router solicitations or IPv6 chatter: a lab's captures hold only its traffic.
        sh(&format!(
            "ip netns exec {name} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
             net.ipv6.conf.default.disable_ipv6=1"
        ))?;
        Ok(name)
    }

    /// A veth pair between two namespaces, addressed and up.
    pub fn veth(
        &mut self,
        (ns_a, if_a, addr_a): (&str, &str, &str),
        (ns_b, if_b, addr_b): (&str, &str, &str),
    ) -> Result<()> {
        self.run(&format!(
            "ip -n {ns_a} link add {if_a} type veth peer name {if_b} netns {ns_b}"
        ))?;
        for (ns, ifname, addr) in [(ns_a, if_a, addr_a), (ns_b, if_b, addr_b)] {
            self.run(&format!("ip -n {ns} addr add {addr} dev {ifname}"))?;
            self.run(&format!("ip -n {ns} link set {ifname} up"))?;
        }
        Ok(())
    }

    /// Permanent neighbour entries on both ends of a veth, for faults that drop ARP too.
    pub fn static_neighbours(
        &mut self,
        (ns_a, if_a, ip_a): (&str, &str, &str),
        (ns_b, if_b, ip_b): (&str, &str, &str),
    ) -> Result<()> {
        let mac = |ns: &str, ifname: &str| {
            sh(&format!(
                "ip netns exec {ns} cat /sys/class/net/{ifname}/address"
            ))
            .map(|m| m.trim().to_string())
        };
        let (mac_a, mac_b) = (mac(ns_a, if_a)?, mac(ns_b, if_b)?);
        self.run(&format!(
            "ip -n {ns_a} neigh replace {ip_b} lladdr {mac_b} dev {if_a} nud permanent"
        ))?;
        self.run(&format!(
            "ip -n {ns_b} neigh replace {ip_a} lladdr {mac_a} dev {if_b} nud permanent"
        ))?;
        Ok(())
    }

    /// Leaves the namespaces in place when this value is dropped (`--keep`).
    pub fn keep(&mut self) -> Vec<String> {
        std::mem::take(&mut self.namespaces)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for name in self.namespaces.drain(..).rev() {
            let _ = sh(&format!("ip netns del {name}"));
        }
    }
}

/// Removes every namespace a lab left behind (after a crash or SIGKILL).
pub fn cleanup() -> Result<usize> {
    let mut removed = 0;
    for (_, name) in crate::kernel::netns::named() {
        if name.starts_with(PREFIX) {
            sh(&format!("ip netns del {name}"))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The pid of another `tracer lab run` running now, if any: labs share their namespace names,
/// so one runs at a time, and only a dead lab's namespaces may be removed.
pub fn running_lab() -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let pid: u32 = p.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(p.path().join("cmdline")).ok()?;
        let mut args = cmdline.split(|b| *b == 0);
        let program = String::from_utf8_lossy(args.next()?).into_owned();
        let is_lab = program.ends_with("tracer")
            && args.next() == Some(b"lab".as_slice())
            && args.next() == Some(b"run".as_slice());
        (is_lab && pid != me).then_some(pid)
    })
}
