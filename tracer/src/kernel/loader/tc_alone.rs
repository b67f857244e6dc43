//! Where the tracer's two tcx programs of a direction sit side by side: the first one then
//! settles a packet's pass for the last one (`tc::first` in the kernel programs), which is
//! told through the `TC_ALONE` map, by ifindex.
//!
//! Found once, after attaching: a tcx program attached later goes before the first or after
//! the last one unless it names one of the tracer's as its neighbour, so two programs found
//! side by side stay so. A tc program knows its device's ifindex, not its namespace: a bit is
//! set only where every traced device of that number has the tracer alone in that direction.

use std::collections::HashMap;

use aya::{
    maps::Array,
    programs::{SchedClassifier, TcAttachType},
    Ebpf,
};
use tracer_common::{
    config::{TC_ALONE_EGRESS, TC_ALONE_INGRESS, TC_ALONE_SLOTS},
    names,
};

const BOTH: u8 = TC_ALONE_INGRESS | TC_ALONE_EGRESS;

/// The `TC_ALONE` bit of a direction.
pub fn bit(direction: TcAttachType) -> u8 {
    match direction {
        TcAttachType::Ingress => TC_ALONE_INGRESS,
        _ => TC_ALONE_EGRESS,
    }
}

/// Whether `ifname` (in the calling thread's namespace) runs exactly two tcx programs in
/// `direction`: the tracer's two, where both were attached as tcx links.
pub fn only_ours(ifname: &str, direction: TcAttachType) -> bool {
    SchedClassifier::query_tcx(ifname, direction).is_ok_and(|(_, programs)| programs.len() == 2)
}

/// The directions, by ifindex, where some traced device has something besides the tracer.
#[derive(Default)]
pub struct TcAlone {
    shared: HashMap<u32, u8>,
}

impl TcAlone {
    /// Before attaching to a device numbered `ifindex`: its bits are cleared, so that no
    /// packet of it is taken for alone while its programs are being attached.
    pub fn attaching(&mut self, ebpf: &mut Ebpf, ifindex: u32) {
        write(ebpf, ifindex, 0);
    }

    /// After attaching: `alone` holds the directions where the device has the tracer alone.
    pub fn attached(&mut self, ebpf: &mut Ebpf, ifindex: u32, alone: u8) {
        let shared = self.shared.entry(ifindex).or_default();
        *shared |= BOTH & !alone;
        write(ebpf, ifindex, BOTH & !*shared);
    }
}

/// Sets the map's entry (a device numbered beyond the map is never taken for alone). The map
/// is the object's own, an array this index fits: the write does not fail.
fn write(ebpf: &mut Ebpf, ifindex: u32, directions: u8) {
    if ifindex >= TC_ALONE_SLOTS {
        return;
    }
    let Some(map) = ebpf.map_mut(names::TC_ALONE) else {
        return;
    };
    if let Ok(mut alone) = Array::<_, u8>::try_from(map) {
        let _ = alone.set(ifindex, directions, 0);
    }
}
