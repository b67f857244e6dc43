//! The kernel's drop reasons (`enum skb_drop_reason`, include/net/dropreason-core.h; the
//! tracer reads the running kernel's names from BTF and drops the `SKB_DROP_REASON_` prefix),
//! sorted once into what they mean for a packet: a normal end after its protocol took it, a
//! rule or program, nobody to receive it, a limit, a failed check, routing, the neighbour,
//! the device, or nothing said.
//!
//! The table is the list of 6.18. A name it does not know (a newer kernel's) is
//! [`DropClass::Unspecified`], which keeps it a drop: only reasons shown in the kernel's
//! source to free a packet its protocol had already taken are normal ends.

/// What a drop reason says happened to the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropClass {
    /// Freed after its protocol took it or its data; nothing was lost (see [`normal_end`]).
    NormalEnd,
    /// A rule or a program decided: netfilter, tc, XDP, BPF cgroup, socket filter, rp_filter,
    /// xfrm, LSM, bridge port state.
    Policy,
    /// Nobody here takes it: no socket, no protocol handler, not addressed to this host.
    NoReceiver,
    /// A queue, a buffer or memory was full: socket buffers, backlogs, qdiscs, rings.
    Resource,
    /// A check of the packet failed: checksums, headers, lengths, TCP sequence and state,
    /// authentication, fragments that cannot be reassembled, tunnel headers.
    Check,
    /// No route, an address routing refuses, or too big for the route's MTU.
    Routing,
    /// The next hop's link-layer address could not be had (ARP/ND).
    Neighbour,
    /// The device could not take it: not ready, no target, recursion.
    Device,
    /// The kernel did not say (`NOT_SPECIFIED`), or a reason this table does not know.
    Unspecified,
}

/// The class of a drop reason name (without `SKB_DROP_REASON_`).
pub fn class(reason: &str) -> DropClass {
    use DropClass::*;
    match reason {
        // Where the kernel uses them (6.18):
        // - QUEUE_PURGE: a socket's queues freed in bulk when it is destroyed
        //   (sk_stream_kill_queues, inet_sock_destruct): what TCP had received and kept.
        // - SOCKET_CLOSE, UNIX_DISCONNECT: AF_UNIX queues freed at close or disconnect.
        // - UNIX_SKIP_OOB: an AF_UNIX out-of-band byte a plain read skipped.
        // - TCP_OLD_DATA: tcp_data_queue, a segment whose data lies wholly before rcv_nxt
        //   (a copy of data TCP already received; it answers with a D-SACK).
        // - TCP_OFOMERGE: tcp_data_queue_ofo, "all the bits are present": a segment whose
        //   data the out-of-order queue already holds.
        // - TCP_OFO_DROP: tcp_ofo_queue, a segment taken off the out-of-order queue whose
        //   data the receive queue already covers (end_seq not after rcv_nxt).
        "QUEUE_PURGE" | "SOCKET_CLOSE" | "UNIX_DISCONNECT" | "UNIX_SKIP_OOB" | "TCP_OLD_DATA"
        | "TCP_OFOMERGE" | "TCP_OFO_DROP" => NormalEnd,
        "NETFILTER_DROP"
        | "SOCKET_FILTER"
        | "IP_RPFILTER"
        | "XFRM_POLICY"
        | "BPF_CGROUP_EGRESS"
        | "TC_EGRESS"
        | "TC_INGRESS"
        | "XDP"
        | "TAP_FILTER"
        | "TAP_TXFILTER"
        | "SECURITY_HOOK"
        | "TC_CHAIN_NOTFOUND"
        | "TC_RECLASSIFY_LOOP"
        | "PSP_INPUT"
        | "PSP_OUTPUT"
        | "ARP_PVLAN_DISABLE"
        | "BRIDGE_INGRESS_STP_STATE"
        | "MAC_IEEE_MAC_CONTROL" => Policy,
        "NO_SOCKET"
        | "IP_NOPROTO"
        | "UNHANDLED_PROTO"
        | "OTHERHOST"
        | "IPV6DISABLED"
        | "IPV6_NDISC_NS_OTHERHOST"
        | "VXLAN_VNI_NOT_FOUND" => NoReceiver,
        "SOCKET_RCVBUFF"
        | "PROTO_MEM"
        | "SOCKET_BACKLOG"
        | "TCP_ZEROWINDOW"
        | "TCP_LISTEN_OVERFLOW"
        | "TCP_OFO_QUEUE_PRUNE"
        | "QDISC_DROP"
        | "QDISC_OVERLIMIT"
        | "QDISC_CONGESTED"
        | "CAKE_FLOOD"
        | "FQ_BAND_LIMIT"
        | "FQ_HORIZON_LIMIT"
        | "FQ_FLOW_LIMIT"
        | "DUALPI2_STEP_DROP"
        | "CPU_BACKLOG"
        | "FULL_RING"
        | "NOMEM"
        | "PFMEMALLOC" => Resource,
        "PKT_TOO_SMALL"
        | "TCP_CSUM"
        | "UDP_CSUM"
        | "IP_CSUM"
        | "ICMP_CSUM"
        | "SKB_CSUM"
        | "IP_INHDR"
        | "HDR_TRUNC"
        | "DEV_HDR"
        | "INVALID_PROTO"
        | "UNICAST_IN_L2_MULTICAST"
        | "IPV6_BAD_EXTHDR"
        | "IPV6_NDISC_FRAG"
        | "IPV6_NDISC_HOP_LIMIT"
        | "IPV6_NDISC_BAD_CODE"
        | "IPV6_NDISC_BAD_OPTIONS"
        | "TCP_AUTH_HDR"
        | "TCP_MD5NOTFOUND"
        | "TCP_MD5UNEXPECTED"
        | "TCP_MD5FAILURE"
        | "TCP_AONOTFOUND"
        | "TCP_AOUNEXPECTED"
        | "TCP_AOKEYNOTFOUND"
        | "TCP_AOFAILURE"
        | "TCP_FLAGS"
        | "TCP_ABORT_ON_DATA"
        | "TCP_OVERWINDOW"
        | "TCP_RFC7323_PAWS"
        | "TCP_RFC7323_PAWS_ACK"
        | "TCP_RFC7323_TW_PAWS"
        | "TCP_RFC7323_TSECR"
        | "TCP_OLD_SEQUENCE"
        | "TCP_INVALID_SEQUENCE"
        | "TCP_INVALID_END_SEQUENCE"
        | "TCP_INVALID_ACK_SEQUENCE"
        | "TCP_RESET"
        | "TCP_INVALID_SYN"
        | "TCP_CLOSE"
        | "TCP_FASTOPEN"
        | "TCP_OLD_ACK"
        | "TCP_TOO_OLD_ACK"
        | "TCP_ACK_UNSENT_DATA"
        | "TCP_MINTTL"
        | "DUP_FRAG"
        | "FRAG_REASM_TIMEOUT"
        | "FRAG_TOO_FAR"
        | "SKB_GSO_SEG"
        | "SKB_UCOPY_FAULT"
        | "PACKET_SOCK_ERROR"
        | "TC_COOKIE_ERROR"
        | "VXLAN_INVALID_HDR"
        | "VXLAN_ENTRY_EXISTS"
        | "MAC_INVALID_SOURCE"
        | "LOCAL_MAC"
        | "IP_TUNNEL_ECN"
        | "CAN_RX_INVALID_FRAME"
        | "CANFD_RX_INVALID_FRAME"
        | "CANXL_RX_INVALID_FRAME" => Check,
        "IP_OUTNOROUTES" | "IP_INNOROUTES" | "IP_INADDRERRORS" | "IP_LOCAL_SOURCE"
        | "IP_INVALID_SOURCE" | "IP_LOCALNET" | "IP_INVALID_DEST" | "PKT_TOO_BIG" => Routing,
        "NEIGH_CREATEFAIL" | "NEIGH_FAILED" | "NEIGH_QUEUEFULL" | "NEIGH_DEAD"
        | "NEIGH_HH_FILLFAIL" => Neighbour,
        "DEV_READY" | "NO_TX_TARGET" | "TUNNEL_TXINFO" | "RECURSION_LIMIT" => Device,
        _ => Unspecified,
    }
}

/// For a reason of the [`DropClass::NormalEnd`] class, what happened, in words: the packet
/// was received, and this is why it was then freed.
pub fn normal_end(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "QUEUE_PURGE" => PURGED_AT_CLOSE,
        "TCP_OLD_DATA" => {
            "received by TCP, which already had its data (a copy of a segment received \
             before) and freed it (TCP_OLD_DATA)"
        }
        "TCP_OFOMERGE" => {
            "received by TCP, which already held its data out of order and freed it \
             (TCP_OFOMERGE)"
        }
        "TCP_OFO_DROP" => {
            "received by TCP and held out of order, then freed when the data before it \
             arrived and covered it (TCP_OFO_DROP)"
        }
        "SOCKET_CLOSE" | "UNIX_DISCONNECT" => {
            "received, then freed with its socket's queue when the socket closed"
        }
        "UNIX_SKIP_OOB" => "received, and skipped by a read that does not take out-of-band data",
        _ => return None,
    })
}

/// How a packet purged at close after its delivery is told.
pub const PURGED_AT_CLOSE: &str =
    "received by TCP, then freed with its socket's queue when the socket closed (QUEUE_PURGE)";

/// Whether `by` (a fate's words) tells one of the normal ends above.
pub fn is_normal_end_words(by: &str) -> bool {
    NORMAL_END_REASONS.iter().any(|r| normal_end(r) == Some(by))
}

const NORMAL_END_REASONS: &[&str] = &[
    "QUEUE_PURGE",
    "TCP_OLD_DATA",
    "TCP_OFOMERGE",
    "TCP_OFO_DROP",
    "SOCKET_CLOSE",
    "UNIX_SKIP_OOB",
];

/// A multicast packet freed by `ip6_mc_input` without a reason (NOT_SPECIFIED): the kernel's
/// "discard" when no socket or service of this host joined the group it is addressed to
/// (`ipv6_chk_mcast_addr` false), as an MLD report to ff02::16 reaching a host that is no
/// multicast router. On a wire a network card's multicast filter would have kept it out.
pub fn ignored_multicast(reason: &str, location: Option<&str>) -> bool {
    reason == "NOT_SPECIFIED" && location.is_some_and(|l| l.starts_with("ip6_mc_input+"))
}

/// How an ignored multicast is told.
pub const IGNORED_MULTICAST: &str = "a multicast to a group no one on this host joined: IPv6 \
     ignored it (ip6_mc_input), as a network card's multicast filter would have";

#[cfg(test)]
mod tests;
