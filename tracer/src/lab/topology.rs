//! Throwaway topologies for labs: namespaces and veths that are removed when dropped.

use anyhow::Result;
pub use harness::sh;
use harness::{veth, End, Netns, Shell};

/// Every namespace a lab creates starts with this, so `tracer lab cleanup` can find leftovers.
pub const PREFIX: &str = "tracer-lab-";

/// A set of namespaces that exists for as long as this value does (unless kept), and the
/// commands that built it, to show the user.
pub struct Topology {
    namespaces: Vec<Netns>,
    pub commands: Vec<String>,
}

/// Runs a command line and records it among the commands a user would type.
impl Shell for Topology {
    fn run(&mut self, line: &str) -> Result<String> {
        let out = sh(line)?;
        self.commands.push(line.to_string());
        Ok(out)
    }
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
        Shell::run(self, line)
    }

    /// Runs a command line inside namespace `ns` (recorded).
    pub fn run_in(&mut self, ns: &str, line: &str) -> Result<String> {
        self.run(&format!("ip netns exec {ns} {line}"))
    }

    /// Creates namespace `PREFIX + short` with its loopback up; returns its full name.
    pub fn netns(&mut self, short: &str) -> Result<String> {
        let netns = Netns::create(&format!("{PREFIX}{short}"))?;
        let name = netns.name.clone();
        self.commands.push(format!("ip netns add {name}"));
        self.namespaces.push(netns);
        // No router solicitations or IPv6 chatter: a lab's captures hold only its traffic.
        // No IGMP reports for link-local groups either: a bridge with multicast snooping joins
        // 224.0.0.106 when it comes up and reports it twice, the second time up to a second
        // later, sometimes inside a neutrality run's counted window (one more multicast sent
        // by the host, received by every port's namespace) and sometimes not.
        sh(&format!(
            "ip netns exec {name} sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
             net.ipv6.conf.default.disable_ipv6=1 net.ipv4.igmp_link_local_mcast_reports=0"
        ))?;
        Ok(name)
    }

    /// A veth pair between two namespaces, addressed and up.
    pub fn veth(
        &mut self,
        (ns_a, if_a, addr_a): (&str, &str, &str),
        (ns_b, if_b, addr_b): (&str, &str, &str),
    ) -> Result<()> {
        let a = End {
            netns: ns_a,
            ifname: if_a,
            addrs: &[addr_a],
        };
        let b = End {
            netns: ns_b,
            ifname: if_b,
            addrs: &[addr_b],
        };
        veth::veth(self, &a, &b)
    }

    /// Permanent neighbour entries on both ends of a veth, for faults that drop ARP too.
    pub fn static_neighbours(
        &mut self,
        a: (&str, &str, &str),
        b: (&str, &str, &str),
    ) -> Result<()> {
        veth::static_neighbours(self, a, b)
    }

    /// Leaves the namespaces in place when this value is dropped (`--keep`).
    pub fn keep(&mut self) -> Vec<String> {
        self.namespaces.drain(..).map(Netns::keep).collect()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Last created, first deleted.
        while let Some(netns) = self.namespaces.pop() {
            drop(netns);
        }
    }
}

/// Removes every namespace a lab left behind (after a crash or SIGKILL).
pub fn cleanup() -> Result<usize> {
    let leftovers = harness::netns::named_with_prefix(PREFIX);
    for name in &leftovers {
        sh(&format!("ip netns del {name}"))?;
    }
    Ok(leftovers.len())
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
