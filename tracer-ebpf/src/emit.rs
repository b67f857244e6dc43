//! The in-kernel filter and the one way events leave the kernel.

use aya_ebpf::helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns};
use tracer_common::{
    event::{Event, EventHeader, HookDetail, PacketSummary, EVENT_VERSION},
    hook::{Hook, Position},
};

use crate::maps::{config, EVENTS, LOST, TRACED_NETNS};

/// Where a sighting happened: the part of the header each hook knows.
pub struct Site {
    pub hook: Hook,
    pub position: Position,
    pub kind: u8,
    pub ifindex: u32,
    pub netns: u32,
    pub skb: u64,
}

/// Whether a global tracepoint should report a packet of namespace `netns`.
#[inline(always)]
pub fn netns_traced(netns: u32) -> bool {
    config!(netns_filter) == 0 || unsafe { TRACED_NETNS.get(&netns) }.is_some()
}

/// The load-time filter of [`tracer_common::config::TraceConfig`].
#[inline(always)]
pub fn packet_wanted(packet: &PacketSummary) -> bool {
    let proto = config!(l4_proto);
    if proto != 0 && proto != packet.l4_proto {
        return false;
    }
    let port = config!(port);
    if port != 0 && port != packet.sport && port != packet.dport {
        return false;
    }
    let family = config!(addr_family);
    if family != 0 {
        let addr = unsafe { core::ptr::read_volatile(&crate::maps::CONFIG.addr) };
        let len = if family == 4 { 4 } else { 16 };
        let is_v6 = packet.l3_proto == tracer_common::parse::ETH_P_IPV6;
        if (family == 6) != is_v6 {
            return false;
        }
        if packet.saddr[..len] != addr[..len] && packet.daddr[..len] != addr[..len] {
            return false;
        }
    }
    true
}

/// Writes one event to the ring buffer, or counts it as lost for its hook.
#[inline(always)]
pub fn emit(site: &Site, packet: &PacketSummary, detail: HookDetail) {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count_lost(site.hook);
        return;
    };
    entry.write(Event {
        header: EventHeader {
            version: EVENT_VERSION,
            kind: site.kind,
            hook: site.hook as u8,
            position: site.position as u8,
            len: core::mem::size_of::<Event>() as u16,
            cpu: unsafe { bpf_get_smp_processor_id() } as u16,
            ifindex: site.ifindex,
            netns: site.netns,
            ts_ns: unsafe { bpf_ktime_get_ns() },
            skb: site.skb,
        },
        packet: *packet,
        detail,
    });
    entry.submit(0);
}

#[inline(always)]
fn count_lost(hook: Hook) {
    if let Some(counter) = LOST.get_ptr_mut(hook as u32) {
        // Per-CPU slot: no other writer, a plain add is enough.
        unsafe { *counter += 1 };
    }
}
