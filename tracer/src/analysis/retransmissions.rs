//! Retransmissions: which journeys repeat an earlier one.

use std::collections::HashMap;

use crate::{analysis::journey::Journey, model::sighting::Proto};

/// Journeys that repeat an earlier packet (same TCP segment, same sequence number and flags):
/// retransmissions, mapped to the journey of the first transmission.
pub fn retransmissions(journeys: &[Journey]) -> HashMap<u64, u64> {
    let mut first: HashMap<_, u64> = HashMap::new();
    let mut out = HashMap::new();
    for journey in journeys.iter().filter(|j| j.copy.is_none()) {
        let s = journey.headers();
        if s.proto != Proto::Tcp || (s.tcp_flags.names().all(|f| f == "ACK") && s.ip_len <= 52) {
            // A bare ACK is not retransmitted, it is just sent again.
            continue;
        }
        let key = (s.src, s.dst, s.sport, s.dport, s.tcp_seq, s.tcp_flags);
        match first.get(&key) {
            Some(&original) => {
                out.insert(journey.id, original);
            }
            None => {
                first.insert(key, journey.id);
            }
        }
    }
    out
}
