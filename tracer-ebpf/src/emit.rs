//! Whether a hook reports its packet: followed, filtered, tunnelled (`ring` writes it).

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_probe_read_kernel;
use tracer_common::{
    config::iface_key,
    event::{kind, tunnel, HookDetail, PacketSummary, TunnelSummary},
    hook::{Hook, Position},
    parse::{parse_l3_shallow, HDR_LEN, L2_LEN},
    tunnel::{self as encapsulation, Outer},
};

use crate::{
    filter, judged,
    kernel::Netns,
    maps::{config, FOLLOWED, FOLLOWING, INNER_SCRATCH, TRACED_IFACES, TRACED_NETNS, TUNNELS},
    ring::emit,
};

/// Where a sighting happened: the part of the header each hook knows.
pub struct Site {
    pub hook: Hook,
    pub position: Position,
    pub kind: u8,
    pub ifindex: u32,
    pub netns: Netns,
    pub skb: u64,
    /// Where the packet's bytes are, for `-w`.
    pub source: Source,
}

/// Where a hook can copy its packet's bytes from (only with `-w`: `config!(snaplen)`).
#[derive(Clone, Copy)]
pub enum Source {
    /// No packet at hand: a socket event, or a driver that may have freed it already.
    None,
    /// The XDP context: the Ethernet frame, with `bpf_xdp_load_bytes`.
    Xdp(*mut c_void),
    /// The tc context: the Ethernet frame, with `bpf_skb_load_bytes` (page fragments too).
    Tc(*mut c_void),
    /// A kernel `struct sk_buff`: from the IP header to the end of its linear part (not for a
    /// normal free); its GSO segments are read for the event.
    Skb(u64),
}

/// Whether a global hook should report a packet of namespace `netns`.
#[inline(always)]
pub fn netns_traced(netns: u32) -> bool {
    // SAFETY: only whether the key is present is used; the value behind the reference, which
    // another CPU may be updating or removing, is never read.
    config!(netns_filter) == 0 || unsafe { TRACED_NETNS.get(&netns) }.is_some()
}

/// The link-layer header a hook copied (XDP and tc see the frame).
pub struct L2<'a> {
    pub bytes: &'a L2Bytes,
    pub len: usize,
}

/// Room for a link-layer header on a hook's stack, 8-aligned: the filter's view takes it in
/// words (`filter::gather`), where unaligned bytes would cost a load and a shift each.
#[repr(C, align(8))]
pub struct L2Bytes(pub [u8; L2_LEN]);

impl L2Bytes {
    pub const fn new() -> Self {
        L2Bytes([0; L2_LEN])
    }
}

/// Emits `packet` at `site` when the filter wants it: it matches, or its skb matched earlier
/// (NAT may have rewritten the addresses since; the skb is the same packet), or it is a
/// tunnel's outer packet carrying such a packet. The hook's headers from L3 on are the first
/// `l3_len` bytes of its scratch buffer; with none there, they are rebuilt from `packet` for
/// the filter.
/// Whether it was reported.
#[inline(always)]
pub fn report(
    site: &Site,
    packet: &PacketSummary,
    l2: Option<L2>,
    l3_len: usize,
    detail: HookDetail,
) -> bool {
    report_with::<true>(site, packet, l2, l3_len, detail)
}

/// [`report`] without looking into tunnels: for `netif_receive`, whose program was at the
/// verifier's limit when the filter and the tunnel search were static subprograms (now it
/// is at 150 k of the 1 M instructions; looking into tunnels there is left to do, with the
/// tunnel tests' outputs to check). tc ingress, right after it on
/// the same side of the tap, sees the packet in its tunnel. A followed packet seen there in a
/// tunnel's outer headers is taken for another packet at that address; tc ingress follows
/// it again by the packet inside.
#[inline(always)]
pub fn report_without_tunnels(
    site: &Site,
    packet: &PacketSummary,
    l2: Option<L2>,
    l3_len: usize,
    detail: HookDetail,
) -> bool {
    report_with::<false>(site, packet, l2, l3_len, detail)
}

#[inline(always)]
fn report_with<const TUNNELS_TOO: bool>(
    site: &Site,
    packet: &PacketSummary,
    l2: Option<L2>,
    l3_len: usize,
    detail: HookDetail,
) -> bool {
    if TUNNELS_TOO && may_be_tunnel(packet) {
        tracer_find_tunnel(
            site.hook as u32,
            l3_len as u32,
            ((packet.l3_proto as u32) << 8) | packet.l4_proto as u32,
            packet.dport as u32,
        );
    }
    let judged_by_any_form = l2.is_some() || config!(filter_l3) != 0;
    let wanted = wanted::<TUNNELS_TOO>(site, packet, l2, l3_len);
    if wanted {
        emit::<TUNNELS_TOO>(site, packet, detail);
    }
    if site.skb != 0 {
        // A rejection the next point may take as its own: a sighting judged by its headers,
        // tunnels looked into (or none possible), by a form of the filter a point with the
        // link-layer header would agree with (without it, a filter on link-layer fields
        // has no form to judge by). Anything else only overwrites the slot.
        let rejected = !wanted
            && judged_by_any_form
            && site.kind == kind::SIGHTING
            && !knows_no_headers(site, packet)
            && (TUNNELS_TOO || !may_be_tunnel(packet));
        judged::note(site.hook, site.skb, site.ifindex, packet.pkt_len, rejected);
    }
    wanted
}

/// Whether `packet`'s outer headers may carry a tunnel: only then does [`tracer_find_tunnel`]
/// run and write the hook's `TUNNELS` slot (a call and a lookup that most packets are spared);
/// for any other packet the slot still describes an earlier one and is not read.
#[inline(always)]
pub fn may_be_tunnel(packet: &PacketSummary) -> bool {
    encapsulation::may_carry(Outer::of(packet))
}

/// Whether the packet is a tunnel's outer packet whose inner headers are in the copied bytes:
/// then they are copied from L3 on into the hook's `INNER_SCRATCH` for the filter and parsed
/// into its `TUNNELS` slot (its kind set). A global function, checked once by the verifier
/// on its own (hence plain numbers for arguments: the outer packet's protocols, packed, and
/// destination port, all the search needs) rather than once per path of each program. The
/// two steps talk through the map, not through values: the verifier then meets the parser
/// with one unknown length and protocol, not one state per path through the tunnel headers.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tracer_find_tunnel(hook: u32, l3_len: u32, protos: u32, dport: u32) -> u32 {
    let outer = Outer {
        l3_proto: (protos >> 8) as u16,
        l4_proto: protos as u8,
        dport: dport as u16,
    };
    if locate_inner(hook, outer, l3_len as usize) {
        parse_inner(hook);
    }
    0
}

/// Finds and copies the inner headers; leaves their length in `inner_len` and their
/// ethertype in `inner.l3_proto` for [`parse_inner`]. Kind `NONE` when there are none.
#[inline(never)]
fn locate_inner(hook: u32, outer: Outer, l3_len: usize) -> bool {
    let Some(slot) = TUNNELS.get_ptr_mut(hook) else {
        return false;
    };
    // SAFETY: a successful lookup's pointer to this hook's `TUNNELS` slot on this CPU, valid
    // for the whole run. Nothing else touches it meanwhile: the slot belongs to one hook, a
    // program does not interrupt itself on its CPU, and no other reference to it is live here.
    let slot = unsafe { &mut *slot };
    slot.kind = tunnel::NONE;
    if l3_len == 0 || !encapsulation::may_carry(outer) {
        return false;
    }
    let (Some(buf), Some(inner)) = (
        crate::maps::SCRATCH.get_ptr(hook),
        INNER_SCRATCH.get_ptr_mut(hook),
    ) else {
        return false;
    };
    // SAFETY: successful lookups of this hook's slots on this CPU in two different maps (no
    // overlap), valid for the run and private to this hook as above. The hook's own `&mut`
    // from `scratch` was last used before `report` was called.
    let (buf, inner) = unsafe { (&*buf, &mut *inner) };
    let Some(found) = encapsulation::find(buf, l3_len, outer) else {
        return false;
    };
    // The inner headers, moved to the start of their own buffer: the parser and the filter
    // read from offset 0. A helper copy, with the source address opaque to the verifier.
    let Some(len) = crate::kernel::helper_len::<HDR_LEN>(l3_len.saturating_sub(found.inner_at))
    else {
        return false;
    };
    let from = filter::opaque(buf.as_ptr()) as u64 + found.inner_at as u64;
    // SAFETY: the destination is the `HDR_LEN`-byte `inner` slot and `len <= HDR_LEN`
    // (`helper_len`); the source is `l3_len - inner_at` bytes of `buf` from `inner_at` on.
    // The helper checks the source address itself and fails (destination zeroed) on a fault.
    if unsafe { bpf_probe_read_kernel(inner.as_mut_ptr().cast(), len, from as *const c_void) } != 0
    {
        return false;
    }
    slot.kind = found.kind;
    slot.inner_len = len as u8;
    slot.id = found.id;
    slot.inner.l3_proto = found.inner_proto;
    true
}

/// Parses the inner headers [`locate_inner`] copied.
#[inline(never)]
fn parse_inner(hook: u32) -> u32 {
    let (Some(slot), Some(inner)) = (TUNNELS.get_ptr_mut(hook), INNER_SCRATCH.get_ptr(hook)) else {
        return 0;
    };
    // SAFETY: this hook's `TUNNELS` and `INNER_SCRATCH` slots on this CPU, from successful
    // lookups, distinct maps; `locate_inner`'s references to them ended when it returned.
    let (slot, inner) = unsafe { (&mut *slot, &*inner) };
    let (len, proto) = (slot.inner_len as usize, slot.inner.l3_proto);
    clear(&mut slot.inner);
    parse_l3_shallow(inner, len, proto, &mut slot.inner);
    0
}

/// Zeroes `packet` word by word: a plain assignment of the default becomes a byte loop
/// (`memset` on map memory), which the verifier walks step by step on every path.
#[inline(always)]
fn clear(packet: &mut PacketSummary) {
    const WORDS: usize = core::mem::size_of::<PacketSummary>() / 4;
    let words = packet as *mut PacketSummary as *mut u32;
    for i in 0..WORDS {
        // SAFETY: `words` is `packet`, an exclusive reference, seen as its 72 / 4 `u32`s:
        // `i < WORDS` keeps the write inside it, the struct is 4-aligned (it has `u32`
        // fields), and all zeroes is a valid value for its integer fields.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
}

/// The inner packet [`find_tunnel`] found for this hook.
#[inline(always)]
pub fn tunnel_slot(hook: u32) -> Option<&'static TunnelSummary> {
    // SAFETY: a successful lookup's pointer to this hook's slot on this CPU, valid for the
    // run (`'static` only in name: callers use it within the run). Written only by
    // `locate_inner` and `parse_inner`, whose references end before any caller of this one.
    TUNNELS.get_ptr(hook).map(|p| unsafe { &*p })
}

/// Stops following `skb`: it was freed, and its address will be reused for another packet.
#[inline(always)]
pub fn forget(skb: u64) {
    if filters_packets() && may_follow_any() {
        unfollow(skb);
    }
}

/// Whether the trace filters packets and `skb` is not followed, known before reading it: an
/// event that only a followed skb makes worth reporting (a normal free, the driver's answer)
/// is then left unread (see `wanted`). Most such events are of packets the filter left alone.
#[inline(always)]
pub fn unfollowed(skb: u64) -> bool {
    filters_packets() && !followed(skb)
}

/// Whether `skb` is followed (see `FOLLOWED`).
#[inline(always)]
pub fn followed(skb: u64) -> bool {
    // SAFETY: as in `wanted`: map memory for the run, any `u64` valid.
    may_follow_any() && unsafe { FOLLOWED.get(&skb) }.is_some_and(|tag| *tag != STALE_TAG)
}

/// The tag of a `FOLLOWED` entry whose packet is gone (freed where no tracepoint fires): the
/// entry stays, for `follow` to write the next followed packet's tag into, since in an LRU
/// map a delete and an insert are list operations under locks (following TCP, where most
/// segments are freed unseen, they were a fifth of tc egress's first program). No packet's
/// tag: `follow_tag` keeps bits 52-55 clear (an IP id or flow label has 20 bits at most).
const STALE_TAG: u64 = u64::MAX;

/// False only when no skb is followed (see `FOLLOWING`): then no packet needs looking up.
#[inline(always)]
fn may_follow_any() -> bool {
    match FOLLOWING.get_ptr(0) {
        // SAFETY: the map's only element, valid for the run; an integer read once.
        Some(count) => (unsafe { core::ptr::read_volatile(count) }) != 0,
        None => true,
    }
}

/// Follows `skb` from here on by `tag`: a new key counts in `FOLLOWING`, an existing one
/// takes the new tag. A full map only makes the LRU forget an old packet (which stays
/// counted: the count errs on the side of looking): following is best effort. An existing
/// entry (mostly a `STALE_TAG` one) is written in place.
#[inline(always)]
fn follow(skb: u64, tag: u64) {
    const BPF_NOEXIST: u64 = 1;
    if let Some(entry) = FOLLOWED.get_ptr_mut(&skb) {
        // SAFETY: as in `wanted`: map memory for the run; a `u64` written.
        unsafe { *entry = tag };
    } else if FOLLOWED.insert(&skb, &tag, BPF_NOEXIST).is_ok() {
        count_followed(1);
    }
}

/// Stops following `skb`, if it was.
#[inline(always)]
fn unfollow(skb: u64) {
    if FOLLOWED.remove(&skb).is_ok() {
        count_followed(u64::MAX); // minus one
    }
}

/// Adds `delta` (wrapping) to `FOLLOWING`, atomically: every CPU adds and removes keys.
#[inline(always)]
fn count_followed(delta: u64) {
    let Some(count) = FOLLOWING.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the map's only element, 8-aligned map memory valid for the run; the other CPUs
    // only change it atomically too. The BPF target has atomic adds (a `lock` add, or
    // BPF_ATOMIC) but no compare-and-swap, so `AtomicU64::fetch_add` is not offered there.
    unsafe {
        #[cfg(target_arch = "bpf")]
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            count, delta,
        );
        #[cfg(not(target_arch = "bpf"))]
        core::sync::atomic::AtomicU64::from_ptr(count)
            .fetch_add(delta, core::sync::atomic::Ordering::Relaxed);
    }
}

#[inline(always)]
fn filters_packets() -> bool {
    config!(filter_l2) != 0 || config!(filter_l3) != 0 || config!(iface_filter) != 0
}

#[inline(always)]
fn wanted<const TUNNELS_TOO: bool>(
    site: &Site,
    packet: &PacketSummary,
    l2: Option<L2>,
    l3_len: usize,
) -> bool {
    if !filters_packets() {
        return true;
    }
    if site.skb != 0 && may_follow_any() {
        // SAFETY: the LRU map is preallocated, so the element stays map memory for the whole
        // run; another CPU removing or reusing it meanwhile can only make the tag another
        // skb's tag (any `u64` is valid), which at worst misjudges whether to follow.
        if let Some(entry) = FOLLOWED.get_ptr_mut(&site.skb) {
            // SAFETY: as above; read once.
            let tag = unsafe { entry.read() };
            // The address is followed, but is it still that packet? An skb freed where no
            // tracepoint fires (TCP frees acknowledged and read skbs quietly) leaves its entry
            // behind, and the next packet built at that address must not inherit it. A tunnel
            // pushed its outer headers onto the same skb: the packet is the one inside.
            if (tag != STALE_TAG && knows_no_headers(site, packet))
                || tag == follow_tag(packet)
                || (TUNNELS_TOO
                    && may_be_tunnel(packet)
                    && carries_followed(site.hook as u32, tag) != 0)
            {
                return true;
            }
            // A stale entry: marked so, so that the new packet's header-less events are not
            // taken, and kept for `follow` to take if the filter wants the new one. (Where
            // tunnels are not looked into, a tunnel packet may be the followed one in its
            // outer headers: left for the next point to tell.)
            if TUNNELS_TOO || !encapsulation::may_carry(Outer::of(packet)) {
                // SAFETY: as above; a `u64` written.
                unsafe { entry.write(STALE_TAG) };
            }
        }
    }
    // Not followed, and without headers: the filter would judge an empty view (and push the
    // views of the hooks around it out of the verdict cache). Nor a normal free of a packet
    // not followed: it ends no journey the trace has, and it is often judged on the other CPU
    // long after the packet's other points, where the cache no longer holds its view. (A
    // socket's read is judged: a raw socket reads a clone, a new skb the filter must take.)
    // Where nothing is filtered, every event was taken above.
    if knows_no_headers(site, packet) || site.kind == kind::FREE {
        return false;
    }
    // Plain numbers across the call: a `None` would leave a register unset, which the
    // verifier refuses to see copied.
    let (l2_bytes, l2_len) = match l2 {
        Some(l2) => (l2.bytes.0.as_ptr(), l2.len),
        None => (core::ptr::null(), 0),
    };
    if !iface_traced(site) {
        return false;
    }
    // The outer headers first: a filter on them (`udp port 4789`) follows the datagram; then
    // the packet inside a tunnel's outer headers, which follows it by its own.
    if filter::filter_accepts(site, packet, l2_bytes, l2_len, l3_len) {
        // Follow it from here on; not at its free, which would only delete the entry again.
        if site.skb != 0 && site.kind == kind::SIGHTING {
            follow(site.skb, follow_tag(packet));
        }
        return true;
    }
    TUNNELS_TOO
        && may_be_tunnel(packet)
        && inner_wanted(site.hook as u32, site.skb, site.kind as u32) != 0
}

/// Whether the tunnel packet [`find_tunnel`] found at this hook carries the packet `tag`
/// follows: 1 if so. A subprogram, so that the hooks' paths do not branch on it.
#[inline(never)]
fn carries_followed(hook: u32, tag: u64) -> u32 {
    match tunnel_slot(hook) {
        Some(t) if t.kind != tunnel::NONE && tag == follow_tag(&t.inner) => 1,
        _ => 0,
    }
}

/// Whether the filter matches the packet inside the tunnel packet found at this hook: then
/// it is followed by its own headers, which come back once the receiving tunnel takes the
/// outer ones off. 1 if so.
#[inline(never)]
fn inner_wanted(hook: u32, skb: u64, event_kind: u32) -> u32 {
    let Some(t) = tunnel_slot(hook) else {
        return 0;
    };
    if t.kind == tunnel::NONE || !filter::inner_filter_accepts(hook) {
        return 0;
    }
    if skb != 0 && event_kind == kind::SIGHTING as u32 {
        follow(skb, follow_tag(&t.inner));
    }
    1
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

#[inline(always)]
fn iface_traced(site: &Site) -> bool {
    if config!(iface_filter) == 0 {
        return true;
    }
    // SAFETY: as in `netns_traced`: only the key's presence is used, the value is never read.
    unsafe { TRACED_IFACES.get(&iface_key(site.netns.inum(), site.ifindex)) }.is_some()
}
