//! The in-kernel filter and the one way events leave the kernel.

use aya_ebpf::helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns};
use tracer_common::{
    config::iface_key,
    event::{kind, Event, EventHeader, HookDetail, PacketSummary, EVENT_VERSION},
    hook::{Hook, Position},
    parse::ETH_P_IPV6,
};

use crate::maps::{config, CONFIG, EVENTS, FOLLOWED, LOST, TRACED_IFACES, TRACED_NETNS};

/// Where a sighting happened: the part of the header each hook knows.
pub struct Site {
    pub hook: Hook,
    pub position: Position,
    pub kind: u8,
    pub ifindex: u32,
    pub netns: u32,
    pub skb: u64,
}

/// Whether a global hook should report a packet of namespace `netns`.
#[inline(always)]
pub fn netns_traced(netns: u32) -> bool {
    config!(netns_filter) == 0 || unsafe { TRACED_NETNS.get(&netns) }.is_some()
}

/// Emits `packet` at `site` when the filter wants it: it matches, or its skb matched earlier
/// (NAT may have rewritten the addresses since; the skb is the same packet).
#[inline(always)]
pub fn report(site: &Site, packet: &PacketSummary, detail: HookDetail) {
    if wanted(site, packet) {
        emit(site, packet, detail);
    }
}

/// Stops following `skb`: it was freed, and its address will be reused for another packet.
#[inline(always)]
pub fn forget(skb: u64) {
    if filters_packets() {
        let _ = FOLLOWED.remove(&skb);
    }
}

#[inline(always)]
fn filters_packets() -> bool {
    config!(addr_family) != 0
        || config!(l4_proto) != 0
        || config!(port) != 0
        || config!(iface_filter) != 0
}

#[inline(always)]
fn wanted(site: &Site, packet: &PacketSummary) -> bool {
    if !filters_packets() {
        return true;
    }
    if site.skb != 0 {
        if let Some(tag) = unsafe { FOLLOWED.get(&site.skb) } {
            // The address is followed, but is it still that packet? An skb freed where no
            // tracepoint fires (TCP frees acknowledged and read skbs quietly) leaves its entry
            // behind, and the next packet built at that address must not inherit it.
            if knows_no_headers(site, packet) || *tag == follow_tag(packet) {
                return true;
            }
            // A stale entry: forget it, so the new packet's header-less events are not taken.
            let _ = FOLLOWED.remove(&site.skb);
        }
    }
    if !matches(site, packet) {
        return false;
    }
    // Follow it from here on; not at its free, which would only delete the entry again. A full
    // map only makes the LRU forget an old packet: following is best effort.
    if site.skb != 0 && site.kind == kind::SIGHTING {
        let _ = FOLLOWED.insert(&site.skb, &follow_tag(packet), 0);
    }
    true
}

/// An event that cannot show its packet's headers: `net_dev_xmit` (the driver has it), or a
/// free. Any other sighting without IP headers is another packet (ARP) at a reused address.
#[inline(always)]
fn knows_no_headers(site: &Site, packet: &PacketSummary) -> bool {
    packet.l3_proto == 0
        && (site.kind != kind::SIGHTING
            || (site.hook == Hook::DevXmit && site.position == Position::Last))
}

/// What NAT leaves unchanged in a packet: transport protocol, IP id and TCP sequence number.
#[inline(always)]
fn follow_tag(packet: &PacketSummary) -> u64 {
    ((packet.l4_proto as u64) << 56)
        | (((packet.ip_id as u64) & 0xff_ffff) << 32)
        | packet.tcp_seq as u64
}

/// The load-time filter of [`tracer_common::config::TraceConfig`].
#[inline(always)]
fn matches(site: &Site, packet: &PacketSummary) -> bool {
    // A route lookup for a received packet often leaves protocol and ports unset: unknown
    // is not a mismatch there.
    let lookup = site.hook == Hook::FibLookup;
    let proto = config!(l4_proto);
    if proto != 0 && proto != packet.l4_proto && !(lookup && packet.l4_proto == 0) {
        return false;
    }
    let port = config!(port);
    let no_ports = packet.sport == 0 && packet.dport == 0;
    if port != 0 && port != packet.sport && port != packet.dport && !(lookup && no_ports) {
        return false;
    }
    let family = config!(addr_family);
    if family != 0 {
        if (family == 6) != (packet.l3_proto == ETH_P_IPV6) {
            return false;
        }
        if !in_network(&packet.saddr) && !in_network(&packet.daddr) {
            return false;
        }
    }
    if config!(iface_filter) != 0 {
        let key = iface_key(site.netns, site.ifindex);
        if unsafe { TRACED_IFACES.get(&key) }.is_none() {
            return false;
        }
    }
    true
}

/// Whether `addr` lies in the filter's `addr/addr_prefix`.
#[inline(always)]
fn in_network(addr: &[u8; 16]) -> bool {
    let net = unsafe { core::ptr::read_volatile(&CONFIG.addr) };
    let mut bits = config!(addr_prefix) as u32;
    for i in 0..16 {
        if bits == 0 {
            break;
        }
        let mask: u8 = if bits >= 8 {
            0xff
        } else {
            0xffu8 << (8 - bits)
        };
        if (addr[i] ^ net[i]) & mask != 0 {
            return false;
        }
        bits = bits.saturating_sub(8);
    }
    true
}

/// Writes one event to the ring buffer, or counts it as lost for its hook.
#[inline(always)]
fn emit(site: &Site, packet: &PacketSummary, detail: HookDetail) {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count_lost(site.hook);
        return;
    };
    // Filled in place: an `Event` built on the stack first would cost 120 of its 512 bytes.
    let event = entry.as_mut_ptr();
    unsafe {
        (*event).header = EventHeader {
            version: EVENT_VERSION,
            kind: site.kind,
            hook: site.hook as u8,
            position: site.position as u8,
            len: core::mem::size_of::<Event>() as u16,
            cpu: bpf_get_smp_processor_id() as u16,
            ifindex: site.ifindex,
            netns: site.netns,
            ts_ns: bpf_ktime_get_ns(),
            skb: site.skb,
        };
        (*event).packet = *packet;
        (*event).detail = detail;
    }
    entry.submit(0);
}

#[inline(always)]
fn count_lost(hook: Hook) {
    if let Some(counter) = LOST.get_ptr_mut(hook as u32) {
        // Per-CPU slot: no other writer, a plain add is enough.
        unsafe { *counter += 1 };
    }
}
