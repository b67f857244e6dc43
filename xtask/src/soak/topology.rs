//! The soak's network: a long-lived pair `soak-a` <-> `soak-b` for the whole run, the pool of
//! namespaces traced from the start and deleted during the run (`soak-pN`), and what must be
//! gone at the end. Every name starts with `soak-`; addresses are in 10.204.0.0/15 and
//! fd00:204::/32, inside these namespaces only.

use std::time::{Duration, Instant};

use anyhow::Result;

use harness::{
    bpf::{attached_count, BPF_TCX_EGRESS, BPF_TCX_INGRESS},
    command_in, output, quiet, sh,
    veth::{veth, Pair},
    Direct, End, Netns,
};

use super::traffic::socket_in;

pub const A: &str = "soak-a";
pub const B: &str = "soak-b";
pub const A4: &str = "10.204.0.1";
pub const B4: &str = "10.204.0.2";
pub const A6: &str = "fd00:204::1";
pub const B6: &str = "fd00:204::2";
/// Ports in B: the echo server, a port whose SYNs iptables drops, one nobody listens on, one
/// whose datagrams iptables drops.
pub const ECHO: u16 = 7001;
pub const DROPPED_TCP: u16 = 7002;
pub const REFUSED: u16 = 7003;
pub const DROPPED_UDP: u16 = 7004;
/// Everything the soak sends, and nothing else.
pub const FILTER: &str = "net 10.204.0.0/15 or net fd00:204::/32";

/// The long-lived pair, routed and filtered, and the pool.
pub struct Network {
    pub pool: Vec<Netns>,
    _pair: Pair,
}

/// Pool namespace `i`: `p0` (10.205.i.2) inside, `vp{i}` (10.205.i.1) in B.
pub fn pool_name(i: usize) -> String {
    format!("soak-p{i}")
}

impl Network {
    pub fn create(pool: usize) -> Result<Network> {
        remove_leftovers();
        let (a4, b4) = (format!("{A4}/24"), format!("{B4}/24"));
        let (a6, b6) = (format!("{A6}/64"), format!("{B6}/64"));
        let pair = Pair::create(
            &End {
                netns: A,
                ifname: "va",
                addrs: &[&a4, &a6],
            },
            &End {
                netns: B,
                ifname: "vb",
                addrs: &[&b4, &b6],
            },
        )?;
        // B routes between A and the churned namespaces, so some packets cross FORWARD.
        sh(&format!("ip -n {A} route add 10.204.0.0/15 via {B4}"))?;
        output(&mut command_in(B, "sysctl -qw net.ipv4.ip_forward=1"))?;
        for rule in [
            format!("-p tcp --dport {DROPPED_TCP} -j DROP"),
            format!("-p udp --dport {DROPPED_UDP} -j DROP"),
        ] {
            output(&mut command_in(B, &format!("iptables -A INPUT {rule}")))?;
        }
        let mut network = Network {
            pool: Vec::new(),
            _pair: pair,
        };
        for i in 0..pool {
            let name = pool_name(i);
            network.pool.push(Netns::create(&name)?);
            veth_to_b(&name, "p0", &format!("vp{i}"), &format!("10.205.{i}"))?;
        }
        Ok(network)
    }
}

/// A veth from `ns` (`inner`, `{net}.2/24`, default route) to B (`outer`, `{net}.1/24`).
pub fn veth_to_b(ns: &str, inner: &str, outer: &str, net: &str) -> Result<()> {
    veth(
        &mut Direct,
        &End {
            netns: ns,
            ifname: inner,
            addrs: &[&format!("{net}.2/24")],
        },
        &End {
            netns: B,
            ifname: outer,
            addrs: &[&format!("{net}.1/24")],
        },
    )?;
    sh(&format!("ip -n {ns} route add default via {net}.1"))?;
    Ok(())
}

/// Namespaces of ours under /run/netns.
pub fn ours() -> Vec<String> {
    harness::netns::named_with_prefix("soak-")
}

/// A soak killed earlier leaves its namespaces behind: only names this soak creates.
fn remove_leftovers() {
    for name in ours() {
        let _ = quiet(&format!("ip netns del {name}"));
    }
}

/// Interfaces in B other than lo and vb: the peers of churned veths. Those whose namespace is
/// gone go with it, but only once nobody holds that namespace any more.
pub fn peers_in_b() -> Result<Vec<String>> {
    let text = sh(&format!("ip -n {B} -o link show"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|name| {
            name.trim()
                .split('@')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .filter(|name| name != "lo" && name != "vb")
        .collect())
}

/// Waits up to `limit` for `check` to find nothing; what it found last.
pub fn wait_until_empty(
    limit: Duration,
    mut check: impl FnMut() -> Result<Vec<String>>,
) -> Result<Vec<String>> {
    let start = Instant::now();
    loop {
        let found = check()?;
        if found.is_empty() || start.elapsed() > limit {
            return Ok(found);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// BPF programs attached to the interfaces of `ns`: what `bpftool net show` lists (XDP and
/// classic tc: every line under a section header), and the tcx programs on `ifname`, which
/// bpftool before 7.3 does not show.
pub fn bpf_attached(ns: &str, ifname: &str) -> Result<Vec<String>> {
    let text = output(&mut command_in(ns, "bpftool net show"))?;
    let mut found: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.ends_with(':'))
        .map(|l| format!("{ns}: {l}"))
        .collect();
    let name = ifname.to_string();
    let counts = socket_in(ns, move || {
        let ifname = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
        // SAFETY: a NUL-terminated name; 0 means no such interface.
        let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
        if ifindex == 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok([
            ("tcx ingress", attached_count(ifindex, BPF_TCX_INGRESS)?),
            ("tcx egress", attached_count(ifindex, BPF_TCX_EGRESS)?),
        ])
    })?;
    for (point, count) in counts.into_iter().filter(|(_, n)| *n > 0) {
        found.push(format!("{ns}/{ifname}: {count} program(s) at {point}"));
    }
    Ok(found)
}

/// Which of `ids` the kernel still has loaded (`bpftool prog show`).
pub fn still_loaded(ids: &[u32]) -> Result<Vec<String>> {
    Ok(harness::programs::still_loaded(ids)?
        .into_iter()
        .map(|id| format!("program {id}"))
        .collect())
}
