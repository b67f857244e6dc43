//! A packet judged once for the points that see it back to back on one CPU.
//!
//! Some points follow each other for one skb with nothing between them that could change
//! its bytes or free it: `netif_receive` then tc ingress (one call of
//! `__netif_receive_skb_core`), tc ingress then netfilter's PREROUTING or LOCAL_IN (the IP
//! receive, on the same CPU), tc egress then `net_dev_start_xmit`. Where the first one left
//! the packet alone (the filter rejected it), the second would read the same headers and
//! judge the same view to the same end: it takes the verdict from a per-CPU slot instead,
//! for a load or two (a rejected datagram's run at those points was about 90-110 ns).
//!
//! Every judgement of an skb a point makes rewrites the slot (a rejection, or "not
//! rejected": followed, reported, freed), so the slot holds the last one made on this CPU.
//! A point takes it only if it names this skb, was made by one of the points allowed just
//! before (`after`), on the same device, at the same length: a packet that went elsewhere in
//! between (a VLAN tag taken off, a tunnel's headers, fragments reassembled, another device)
//! has another length or device and is judged again. Only a rejection is taken: a packet the
//! trace wants is read at every point for its event anyway.

use tracer_common::{hook::Hook, parse::ETH_HLEN};

use crate::maps::{Judged, JUDGED};

/// The bits of `hooks` for [`rejected_just_now`]'s `after`.
#[inline(always)]
pub const fn hooks(hooks: &[Hook]) -> u32 {
    let mut bits = 0;
    let mut i = 0;
    while i < hooks.len() {
        bits |= 1 << hooks[i] as u32;
        i += 1;
    }
    bits
}

/// The packet's length as its L3 packet: a point that sees the frame (tc, the driver) counts
/// the Ethernet header in `skb->len`, `netif_receive` (after `eth_type_trans`) and netfilter
/// do not. A frame with another link-layer header gets a length that matches no other
/// point's: it is judged at each point, as before.
#[inline(always)]
fn l3_len(hook: Hook, skb_len: u32) -> u32 {
    match hook {
        Hook::TcIngress | Hook::TcEgress | Hook::DevXmit => skb_len.wrapping_sub(ETH_HLEN as u32),
        _ => skb_len,
    }
}

/// Notes how point `hook` just judged `skb` (on device `ifindex`, `skb_len` bytes as it sees
/// them): `rejected` where the trace leaves the packet alone and the point after it would too.
#[inline(always)]
pub fn note(hook: Hook, skb: u64, ifindex: u32, skb_len: u32, rejected: bool) {
    let Some(slot) = JUDGED.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the map's only slot on this CPU, from a successful lookup, valid for the run;
    // written field by field. The skb goes last: a program interrupting this one between the
    // stores rewrites the slot whole, and what is left names one skb with the fields of the
    // other only in that window.
    unsafe {
        (*slot).skb = 0;
        (*slot).l3_len = l3_len(hook, skb_len);
        (*slot).ifindex = ifindex;
        (*slot).hook = hook as u16;
        (*slot).rejected = rejected as u16;
        (*slot).skb = skb;
    }
}

/// Whether one of the points `after` ([`hooks`]) was the last to judge `skb` on this CPU, on
/// device `ifindex` at the same L3 length, and rejected it: then point `hook` does too, and
/// notes it so for the point after it.
#[inline(always)]
pub fn rejected_just_now(after: u32, hook: Hook, skb: u64, ifindex: u32, skb_len: u32) -> bool {
    let Some(slot) = JUDGED.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: as in `note`; integers are read, and two written.
    unsafe {
        let Judged {
            skb: was_skb,
            l3_len: was_len,
            ifindex: was_ifindex,
            hook: was_hook,
            rejected,
        } = *slot;
        let taken = was_skb == skb
            && skb != 0
            && rejected != 0
            && was_ifindex == ifindex
            && was_len == l3_len(hook, skb_len)
            && after & (1u32 << (was_hook as u32 & 31)) != 0;
        if taken {
            (*slot).hook = hook as u16;
        }
        taken
    }
}
