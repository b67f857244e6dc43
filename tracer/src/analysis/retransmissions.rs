//! Retransmissions: which journeys repeat an earlier one.

use std::collections::HashMap;

use std::net::IpAddr;

use crate::{
    analysis::journey::Journey,
    model::{sighting::Proto, tcp_flags::TcpFlags},
};

/// What a retransmission repeats: the segment's addresses, ports, sequence number and flags.
pub type Key = (Option<IpAddr>, Option<IpAddr>, u16, u16, u32, TcpFlags);

/// The key of a TCP segment that can be retransmitted; none for a copy, a bare ACK (it is not
/// retransmitted, just sent again) or another protocol.
pub fn key(journey: &Journey) -> Option<Key> {
    let s = journey.headers();
    if journey.copy.is_some()
        || s.proto != Proto::Tcp
        || (s.tcp_flags.names().all(|f| f == "ACK") && s.ip_len <= 52)
    {
        return None;
    }
    Some((s.src, s.dst, s.sport, s.dport, s.tcp_seq, s.tcp_flags))
}

/// Journeys that repeat an earlier packet (same TCP segment, same sequence number and flags):
/// retransmissions, mapped to the journey of the first transmission.
pub fn retransmissions(journeys: &[Journey]) -> HashMap<u64, u64> {
    let mut first: HashMap<_, u64> = HashMap::new();
    let mut out = HashMap::new();
    for journey in journeys.iter() {
        let Some(key) = key(journey) else {
            continue;
        };
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
