//! A packet judged once for the points that see it back to back on one CPU.
//!
//! Some points follow each other for one skb with nothing between them that could change
//! its bytes or free it: `netif_receive` then tc ingress (one call of
//! `__netif_receive_skb_core`), tc ingress then netfilter's PREROUTING or LOCAL_IN (the IP
//! receive, on the same CPU), LOCAL_OUT or FORWARD then POSTROUTING, POSTROUTING then tc
//! egress, tc egress then `net_dev_start_xmit` (the readers: `tc::rejected_just_before`,
//! `netfilter::rejected_just_before`, `tracepoints::tracer_dev_start_xmit`). Where the first
//! one left the packet alone (the filter rejected it), the second would read the same
//! headers and judge the same view to the same end: it takes the verdict from a per-CPU slot
//! instead, for a load or two (a rejected datagram's run at those points was 87-111 ns, and
//! is 48-55 ns with it).
//!
//! Every judgement of an skb a point makes rewrites the slot (a rejection, or "not
//! rejected": followed, reported, freed), so the slot holds the last one made on this CPU.
//! A point takes it only if it names this skb, was made by one of the points allowed just
//! before (`after`), on the same device, at the same length: a packet that went elsewhere in
//! between (a VLAN tag taken off, a tunnel's headers, fragments reassembled, another device)
//! has another length or device and is judged again. Only a rejection is taken: a packet the
//! trace wants is read at every point for its event anyway.

use tracer_common::{hook::Hook, parse::ETH_HLEN};

use crate::{
    emit::followed,
    maps::{Judged, JUDGED},
};

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
fn l3_len(hook: u32, skb_len: u32) -> u32 {
    let with_frame = hook == Hook::TcIngress as u32
        || hook == Hook::TcEgress as u32
        || hook == Hook::DevXmit as u32;
    if with_frame {
        skb_len.wrapping_sub(ETH_HLEN as u32)
    } else {
        skb_len
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
        (*slot).l3_len = l3_len(hook as u32, skb_len);
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
    let was = tracer_judged_before(after, hook as u32, ifindex, skb_len);
    if was == 0 || was != skb {
        return false;
    }
    if let Some(slot) = JUDGED.get_ptr_mut(0) {
        // SAFETY: as in `note`; one integer is written.
        unsafe { (*slot).hook = hook as u16 };
    }
    true
}

/// The skb of the last judgement on this CPU if it was a rejection by one of the points
/// `after`, on device `ifindex` at the L3 length point `hook` sees as `skb_len`, and the skb is
/// not followed; 0 otherwise. A global function, checked once by the verifier on its own:
/// inlined, its chain of comparisons came before the whole of a hook's program, which 6.1's
/// verifier then walked once per way out of the chain (tc ingress's first program went past
/// its million instructions). Hence plain numbers for arguments, and the skb compared by the
/// caller (a global function takes no typed pointer).
///
/// Never a followed skb. Between LOCAL_OUT and POSTROUTING, or POSTROUTING and tc egress, a
/// sending task may move to another CPU, whose slot can still hold an earlier packet at the
/// same address (same device and length: a flow's segments). A packet the trace wants was
/// followed where it was judged, so such a stale rejection is never taken for it; one it
/// does not want is rejected either way.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tracer_judged_before(after: u32, hook: u32, ifindex: u32, skb_len: u32) -> u64 {
    let Some(slot) = JUDGED.get_ptr(0) else {
        return 0;
    };
    // SAFETY: as in `note`; the slot is copied out, integers only.
    let was: Judged = unsafe { *slot };
    let taken = was.rejected != 0
        && was.ifindex == ifindex
        && was.l3_len == l3_len(hook, skb_len)
        && after & (1u32 << (was.hook as u32 & 31)) != 0;
    if !taken || followed(was.skb) {
        return 0;
    }
    was.skb
}
