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

/// A set of namespaces that exists for as long as this value does.
pub struct Topology {
    namespaces: Vec<String>,
}

impl Topology {
    pub fn new() -> Topology {
        Topology {
            namespaces: Vec::new(),
        }
    }

    /// Creates namespace `PREFIX + short` with its loopback up; returns its full name.
    pub fn netns(&mut self, short: &str) -> Result<String> {
        let name = format!("{PREFIX}{short}");
        let _ = sh(&format!("ip netns del {name}"));
        sh(&format!("ip netns add {name}"))?;
        self.namespaces.push(name.clone());
        sh(&format!("ip -n {name} link set lo up"))?;
        Ok(name)
    }

    /// A veth pair between two namespaces, addressed and up.
    pub fn veth(
        &self,
        (ns_a, if_a, addr_a): (&str, &str, &str),
        (ns_b, if_b, addr_b): (&str, &str, &str),
    ) -> Result<()> {
        sh(&format!(
            "ip -n {ns_a} link add {if_a} type veth peer name {if_b} netns {ns_b}"
        ))?;
        for (ns, ifname, addr) in [(ns_a, if_a, addr_a), (ns_b, if_b, addr_b)] {
            sh(&format!("ip -n {ns} addr add {addr} dev {ifname}"))?;
            sh(&format!("ip -n {ns} link set {ifname} up"))?;
        }
        Ok(())
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
    for (_, name) in crate::netns::names() {
        if name.starts_with(PREFIX) {
            sh(&format!("ip netns del {name}"))?;
            removed += 1;
        }
    }
    Ok(removed)
}
