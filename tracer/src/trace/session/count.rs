//! `-c`: how many distinct packets the trace has seen.

use crate::model::sighting::{Proto, Sighting};

/// Distinct packets among the sightings, for `-c`: by what NAT leaves alone (protocol, IP
/// id, TCP sequence and acknowledgment, ICMP type, length). Approximate where those repeat
/// (IPv6 UDP with a fixed flow label); the report then keeps exactly the first N journeys.
#[derive(Default)]
pub(super) struct PacketCount(std::collections::HashSet<(Proto, u32, u32, u32, u8, u16)>);

impl PacketCount {
    pub(super) fn add(&mut self, sightings: &[Sighting]) -> usize {
        for s in sightings
            .iter()
            .filter(|s| s.on_path() && s.proto != Proto::Unknown)
        {
            let key = (
                s.proto,
                s.ip_id,
                s.tcp_seq,
                s.tcp_ack,
                s.icmp_type,
                s.ip_len,
            );
            self.0.insert(key);
        }
        self.0.len()
    }
}
