//! The hook catalogue: what the tracer knows about each observation point, in one table. The
//! loader (programs, mechanism), the doctor (the kernel each needs), the tcpdump verdicts (side of
//! the tap), the outputs (direction, tap line, path) and the pcapng writer (direction, verdict)
//! read it instead of each keeping a `match` of its own.
//!
//! Where the AF_PACKET taps sit (what tcpdump reads): on receive in `__netif_receive_skb_core`,
//! right after the `netif_receive_skb` tracepoint (only a generic-mode XDP program runs between
//! them) and before tc ingress; on transmit in `xmit_one`, after tc egress and right before the
//! `net_dev_start_xmit` tracepoint.

use crate::hook::{Hook, Position, Side, HOOK_SLOTS};

/// One observation point's facts.
#[derive(Debug)]
pub struct HookInfo {
    pub hook: Hook,
    /// The name in JSON output and recordings: a contract, never changed.
    pub name: &'static str,
    /// Which side of its interface it sees a packet on: the JSON path's `dir`, pcapng's
    /// direction, the tcpdump verdict's direction.
    pub side: Side,
    /// Where it sits against the tap of its side.
    pub tap: Tap,
    /// A point of the packet's path through the stack (XDP to the driver), as opposed to an end
    /// of life (free, socket read) or an annotation (TCP, ICMP, routing).
    pub on_path: bool,
    /// Whether it sees the link-layer header: its program starts at the Ethernet header (and
    /// reads a VLAN tag there), so its copied bytes are a frame; elsewhere they start at the IP
    /// header. (Each record also says where its bytes start; the pcapng writer reads that.)
    pub link_layer: bool,
    /// The verdict a pcapng packet block written at this point carries.
    pub pcapng_verdict: PcapngVerdict,
    /// Its kernel programs, how they are attached and the kernel they need.
    pub mechanism: Mechanism,
}

/// Where a point sits against the AF_PACKET tap of its side (see the module's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tap {
    /// Before it: a capture there has not seen the packet yet, and will not if it dies here.
    /// XDP on the way in; on the way out LOCAL_OUT, FORWARD and POSTROUTING (which name the
    /// route's output device) and tc egress.
    Before,
    /// Next to it, with nothing between that drops packets (but a generic-mode XDP program):
    /// a capture there sees what this point sees. `netif_receive` just before the receive
    /// taps; `dev_xmit` just after the transmit taps.
    At,
    /// Past it: a capture there saw the packet (tc ingress, PREROUTING, LOCAL_IN).
    After,
    /// Not at an interface's tap: an end of life, a socket read, an annotation.
    Away,
}

impl Tap {
    /// Whether a capture on the point's interface has seen the packet by the time it is here.
    pub const fn passed(self) -> bool {
        matches!(self, Tap::At | Tap::After)
    }
}

/// The verdict option (`epb_verdict`) pcapng packet blocks carry at a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcapngVerdict {
    /// None: the point is not a program that passes or drops packets.
    None,
    /// An XDP action: `XDP_PASS`, or `XDP_DROP` where the packet died here.
    Xdp,
    /// A tc action, `TC_ACT_OK` or `TC_ACT_SHOT`, at the first program of the point: a drop
    /// between the first and the last is a tc program's.
    Tc,
}

/// How a point's programs are attached, and the first kernel that allows it.
#[derive(Debug)]
pub enum Mechanism {
    /// One XDP program per traced interface, with `--xdp`, by an XDP link.
    Xdp {
        program: &'static str,
        since: &'static str,
    },
    /// A first and a last program per traced interface and direction: tcx links ordered before
    /// and after every other tcx program, else `cls_bpf` filters on a clsact qdisc at the
    /// first and the last priority.
    Tc {
        first: &'static str,
        last: &'static str,
        since: &'static str,
    },
    /// A first and a last program linked to every netfilter hook of each traced namespace by
    /// BPF netfilter links, else an entry and an exit program on `nf_hook_slow` (BPF
    /// trampolines) for every namespace at once.
    Netfilter {
        first: &'static str,
        last: &'static str,
        entry: &'static str,
        exit: &'static str,
        since: &'static str,
    },
    /// Global typed tracepoints (`tp_btf`).
    Tracepoints(&'static [Tracepoint]),
}

impl Mechanism {
    /// The first kernel that has it, as `tracer doctor` says it; each tracepoint has its own.
    pub const fn since(&self) -> Option<&'static str> {
        match self {
            Mechanism::Xdp { since, .. }
            | Mechanism::Tc { since, .. }
            | Mechanism::Netfilter { since, .. } => Some(since),
            Mechanism::Tracepoints(_) => None,
        }
    }

    /// The tracepoints of a tracepoint mechanism; none for the others.
    pub const fn tracepoints(&self) -> &'static [Tracepoint] {
        match self {
            Mechanism::Tracepoints(tracepoints) => tracepoints,
            _ => &[],
        }
    }

    /// Every program name it may load, tracepoint variants included.
    pub fn programs(&self, mut each: impl FnMut(&'static str)) {
        match self {
            Mechanism::Xdp { program, .. } => each(program),
            Mechanism::Tc { first, last, .. } => [first, last].into_iter().for_each(|p| each(p)),
            Mechanism::Netfilter {
                first,
                last,
                entry,
                exit,
                ..
            } => [first, last, entry, exit].into_iter().for_each(|p| each(p)),
            Mechanism::Tracepoints(tracepoints) => tracepoints
                .iter()
                .flat_map(|tp| tp.programs.iter())
                .for_each(|(_, p)| each(p)),
        }
    }
}

/// A global typed tracepoint and its program variants.
#[derive(Debug)]
pub struct Tracepoint {
    pub name: &'static str,
    /// (arguments the program reads, program name), most arguments first: the first that
    /// this kernel's tracepoint has enough arguments for is loaded.
    pub programs: &'static [(usize, &'static str)],
    /// The first kernel that has it, as `tracer doctor` says it.
    pub since: &'static str,
}

impl Tracepoint {
    /// The program variant for a kernel whose tracepoint passes `args` arguments.
    pub fn program_for(&self, args: usize) -> Option<&'static str> {
        self.programs
            .iter()
            .find(|(needs, _)| *needs <= args)
            .map(|(_, program)| *program)
    }
}

const TP_BTF: &str = "5.5 (tp_btf)";

const fn tracepoint(
    name: &'static str,
    programs: &'static [(usize, &'static str)],
    since: &'static str,
) -> Tracepoint {
    Tracepoint {
        name,
        programs,
        since,
    }
}

const NETFILTER: Mechanism = Mechanism::Netfilter {
    first: "tracer_nf_first",
    last: "tracer_nf_last",
    entry: "tracer_nf_hook_entry",
    exit: "tracer_nf_hook_exit",
    since: "6.4",
};

const TC_SINCE: &str = "4.5 (clsact), 6.6 (tcx)";

/// A point of the packet's path.
const fn path(
    hook: Hook,
    name: &'static str,
    side: Side,
    tap: Tap,
    mechanism: Mechanism,
) -> HookInfo {
    let link_layer = matches!(mechanism, Mechanism::Xdp { .. } | Mechanism::Tc { .. });
    let pcapng_verdict = match mechanism {
        Mechanism::Xdp { .. } => PcapngVerdict::Xdp,
        Mechanism::Tc { .. } => PcapngVerdict::Tc,
        _ => PcapngVerdict::None,
    };
    HookInfo {
        hook,
        name,
        side,
        tap,
        on_path: true,
        link_layer,
        pcapng_verdict,
        mechanism,
    }
}

/// An end of life or an annotation: not at an interface's tap, seen by tracepoints.
const fn beside(hook: Hook, name: &'static str, tracepoints: &'static [Tracepoint]) -> HookInfo {
    HookInfo {
        hook,
        name,
        side: Side::Neither,
        tap: Tap::Away,
        on_path: false,
        link_layer: false,
        pcapng_verdict: PcapngVerdict::None,
        mechanism: Mechanism::Tracepoints(tracepoints),
    }
}

/// Every observation point, in the order a packet meets them (then ends of life, then
/// annotations): the order the loader attaches the tracepoints and the doctor lists them.
pub static CATALOGUE: [HookInfo; 16] = [
    path(
        Hook::Xdp,
        "xdp",
        Side::Rx,
        Tap::Before,
        Mechanism::Xdp {
            program: "tracer_xdp",
            since: "4.8",
        },
    ),
    path(
        Hook::NetifReceive,
        "netif_receive",
        Side::Rx,
        Tap::At,
        Mechanism::Tracepoints(&[tracepoint(
            "netif_receive_skb",
            &[(1, "tracer_netif_receive")],
            TP_BTF,
        )]),
    ),
    path(
        Hook::TcIngress,
        "tc_ingress",
        Side::Rx,
        Tap::After,
        Mechanism::Tc {
            first: "tracer_tc_ingress_first",
            last: "tracer_tc_ingress_last",
            since: TC_SINCE,
        },
    ),
    path(
        Hook::NfPrerouting,
        "nf_prerouting",
        Side::Rx,
        Tap::After,
        NETFILTER,
    ),
    path(
        Hook::NfLocalIn,
        "nf_local_in",
        Side::Rx,
        Tap::After,
        NETFILTER,
    ),
    // The FORWARD hook's state has both devices; the tracer reports `out`, the route's output
    // device (the input one was seen at PREROUTING): the packet is on its way out of it.
    path(
        Hook::NfForward,
        "nf_forward",
        Side::Tx,
        Tap::Before,
        NETFILTER,
    ),
    path(
        Hook::NfLocalOut,
        "nf_local_out",
        Side::Tx,
        Tap::Before,
        NETFILTER,
    ),
    path(
        Hook::NfPostrouting,
        "nf_postrouting",
        Side::Tx,
        Tap::Before,
        NETFILTER,
    ),
    path(
        Hook::TcEgress,
        "tc_egress",
        Side::Tx,
        Tap::Before,
        Mechanism::Tc {
            first: "tracer_tc_egress_first",
            last: "tracer_tc_egress_last",
            since: TC_SINCE,
        },
    ),
    // `net_dev_start_xmit` is its first program, `net_dev_xmit` (the driver's answer) its last.
    path(
        Hook::DevXmit,
        "dev_xmit",
        Side::Tx,
        Tap::At,
        Mechanism::Tracepoints(&[
            tracepoint(
                "net_dev_start_xmit",
                &[(1, "tracer_dev_start_xmit")],
                TP_BTF,
            ),
            tracepoint("net_dev_xmit", &[(4, "tracer_net_dev_xmit")], TP_BTF),
        ]),
    ),
    beside(
        Hook::KfreeSkb,
        "kfree_skb",
        &[tracepoint(
            "kfree_skb",
            &[(3, "tracer_kfree_skb"), (2, "tracer_kfree_skb_2")],
            TP_BTF,
        )],
    ),
    beside(
        Hook::ConsumeSkb,
        "consume_skb",
        &[tracepoint(
            "consume_skb",
            &[(2, "tracer_consume_skb"), (1, "tracer_consume_skb_1")],
            TP_BTF,
        )],
    ),
    beside(
        Hook::Socket,
        "socket",
        &[tracepoint(
            "skb_copy_datagram_iovec",
            &[(2, "tracer_socket_read")],
            TP_BTF,
        )],
    ),
    beside(
        Hook::Tcp,
        "tcp",
        &[
            tracepoint(
                "tcp_send_reset",
                &[(3, "tracer_tcp_send_reset"), (2, "tracer_tcp_send_reset_2")],
                "4.15",
            ),
            tracepoint(
                "tcp_receive_reset",
                &[(1, "tracer_tcp_receive_reset")],
                "4.15",
            ),
            tracepoint(
                "tcp_retransmit_skb",
                &[(1, "tracer_tcp_retransmit")],
                "4.15",
            ),
            tracepoint("tcp_bad_csum", &[(1, "tracer_tcp_bad_csum")], "5.16"),
        ],
    ),
    beside(
        Hook::IcmpSend,
        "icmp_send",
        &[tracepoint("icmp_send", &[(3, "tracer_icmp_send")], "6.10")],
    ),
    beside(
        Hook::FibLookup,
        "fib_lookup",
        &[tracepoint(
            "fib_table_lookup",
            &[(4, "tracer_fib_lookup")],
            TP_BTF,
        )],
    ),
];

/// Hook id -> its row in [`CATALOGUE`]; built, and checked to cover every hook exactly once,
/// at compile time.
static ROW: [u8; HOOK_SLOTS as usize] = {
    let mut row = [u8::MAX; HOOK_SLOTS as usize];
    let mut i = 0;
    while i < CATALOGUE.len() {
        let id = CATALOGUE[i].hook as usize;
        assert!(row[id] == u8::MAX, "a hook listed twice in the catalogue");
        row[id] = i as u8;
        i += 1;
    }
    let mut h = 0;
    while h < Hook::ALL.len() {
        assert!(
            row[Hook::ALL[h] as usize] != u8::MAX,
            "a hook missing from the catalogue"
        );
        h += 1;
    }
    row
};

impl Hook {
    /// This hook's row of the catalogue.
    pub const fn info(self) -> &'static HookInfo {
        &CATALOGUE[ROW[self as usize] as usize]
    }
}

/// Every tracepoint the tracer attaches, with its hook, in catalogue order.
pub fn tracepoints() -> impl Iterator<Item = (Hook, &'static Tracepoint)> {
    CATALOGUE.iter().flat_map(|info| {
        info.mechanism
            .tracepoints()
            .iter()
            .map(|tp| (info.hook, tp))
    })
}

/// The XDP program (attached with `--xdp`).
pub fn xdp_program() -> &'static str {
    CATALOGUE
        .iter()
        .find_map(|info| match info.mechanism {
            Mechanism::Xdp { program, .. } => Some(program),
            _ => None,
        })
        .expect("the catalogue has an XDP point")
}

/// The tc programs: (hook, position, program), in catalogue order (ingress, then egress),
/// each hook's first then its last.
pub fn tc_programs() -> impl Iterator<Item = (Hook, Position, &'static str)> {
    CATALOGUE
        .iter()
        .filter_map(|info| match info.mechanism {
            Mechanism::Tc { first, last, .. } => Some([
                (info.hook, Position::First, first),
                (info.hook, Position::Last, last),
            ]),
            _ => None,
        })
        .flatten()
}

/// The netfilter programs, shared by its five hooks.
pub struct NetfilterPrograms {
    /// For BPF netfilter links: the programs linked at the first and the last priority.
    pub links: [(&'static str, Position); 2],
    /// For trampolines on `nf_hook_slow`: the fentry and the fexit program.
    pub entry: &'static str,
    pub exit: &'static str,
}

pub fn netfilter_programs() -> NetfilterPrograms {
    CATALOGUE
        .iter()
        .find_map(|info| match info.mechanism {
            Mechanism::Netfilter {
                first,
                last,
                entry,
                exit,
                ..
            } => Some(NetfilterPrograms {
                links: [(first, Position::First), (last, Position::Last)],
                entry,
                exit,
            }),
            _ => None,
        })
        .expect("the catalogue has netfilter points")
}

#[cfg(test)]
mod tests;
