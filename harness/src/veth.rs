//! Veth pairs between namespaces, addressed and up, built with the same command lines a
//! person would type. Who runs the lines is the caller's [`Shell`]: a lab records them to
//! show them, the tests and xtask just run them.

use anyhow::Result;

use crate::{command::sh, netns::Netns};

/// Runs the command lines that build a topology.
pub trait Shell {
    /// Runs `line`; its stdout, or an error that names it.
    fn run(&mut self, line: &str) -> Result<String>;
}

/// Runs each line as it comes ([`sh`]), keeping nothing.
pub struct Direct;

impl Shell for Direct {
    fn run(&mut self, line: &str) -> Result<String> {
        sh(line)
    }
}

/// One end of a veth pair: its namespace, interface and addresses (`10.0.0.1/24`,
/// `fd00::1/64`).
pub struct End<'a> {
    pub netns: &'a str,
    pub ifname: &'a str,
    pub addrs: &'a [&'a str],
}

/// A veth pair from `a` to `b`, each end addressed and up.
pub fn veth(shell: &mut impl Shell, a: &End, b: &End) -> Result<()> {
    shell.run(&format!(
        "ip -n {} link add {} type veth peer name {} netns {}",
        a.netns, a.ifname, b.ifname, b.netns
    ))?;
    configure(shell, a)?;
    configure(shell, b)
}

/// Addresses on an existing interface, then up. IPv6 addresses skip duplicate address
/// detection, so they answer at once rather than after a second or two.
pub fn configure(shell: &mut impl Shell, end: &End) -> Result<()> {
    let (ns, ifname) = (end.netns, end.ifname);
    for addr in end.addrs {
        let nodad = if addr.contains(':') { " nodad" } else { "" };
        shell.run(&format!("ip -n {ns} addr add {addr} dev {ifname}{nodad}"))?;
    }
    shell.run(&format!("ip -n {ns} link set {ifname} up"))?;
    Ok(())
}

/// Permanent neighbour entries on both ends of a veth `(namespace, interface, address)`, for
/// faults that drop ARP too.
pub fn static_neighbours(
    shell: &mut impl Shell,
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
    shell.run(&format!(
        "ip -n {ns_a} neigh replace {ip_b} lladdr {mac_b} dev {if_a} nud permanent"
    ))?;
    shell.run(&format!(
        "ip -n {ns_b} neigh replace {ip_a} lladdr {mac_a} dev {if_b} nud permanent"
    ))?;
    Ok(())
}

/// Two fresh namespaces joined by a veth pair, both removed on drop.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
}

impl Pair {
    /// Creates the namespaces of `a` and `b` (deleting leftovers of the same names) and the
    /// veth between them.
    pub fn create(a: &End, b: &End) -> Result<Pair> {
        let pair = Pair {
            a: Netns::create(a.netns)?,
            b: Netns::create(b.netns)?,
        };
        veth(&mut Direct, a, b)?;
        Ok(pair)
    }
}
