//! Headers rebuilt from a [`PacketSummary`], for hooks that know a packet only by its
//! fields (a socket's 4-tuple, a route lookup's flow): the filter then runs on the same kind
//! of bytes everywhere. Only what the summary knows is written; the rest stays zero.

use crate::{
    event::PacketSummary,
    parse::{ETH_P_IP, ETH_P_IPV6, HDR_LEN},
};

/// Writes IPv4 or IPv6 and the transport header of `packet` into `buf`; returns the bytes
/// written (0 when the summary has no IP header to rebuild).
#[inline(always)]
pub fn headers_from_summary(packet: &PacketSummary, buf: &mut [u8; HDR_LEN]) -> usize {
    let l4 = match packet.l3_proto {
        ETH_P_IP => {
            buf[..20].fill(0);
            buf[0] = 0x45;
            buf[2..4].copy_from_slice(&packet.ip_len.to_be_bytes());
            buf[4..6].copy_from_slice(&(packet.ip_id as u16).to_be_bytes());
            buf[6] = if packet.df != 0 { 0x40 } else { 0 };
            buf[8] = packet.ttl;
            buf[9] = packet.l4_proto;
            buf[12..16].copy_from_slice(&packet.saddr[..4]);
            buf[16..20].copy_from_slice(&packet.daddr[..4]);
            20
        }
        ETH_P_IPV6 => {
            buf[..8].fill(0);
            buf[0] = 0x60;
            // The flow label (the summary's `ip_id`), so `ip6[1:3] & 0xfffff` sees it.
            let label = packet.ip_id & 0x000f_ffff;
            buf[1] = (label >> 16) as u8;
            buf[2] = (label >> 8) as u8;
            buf[3] = label as u8;
            let payload = packet.ip_len.saturating_sub(40);
            buf[4..6].copy_from_slice(&payload.to_be_bytes());
            buf[6] = packet.l4_proto;
            buf[7] = packet.ttl;
            buf[8..24].copy_from_slice(&packet.saddr);
            buf[24..40].copy_from_slice(&packet.daddr);
            40
        }
        _ => return 0,
    };
    let l4_len = match packet.l4_proto {
        6 => {
            buf[l4..l4 + 20].fill(0);
            buf[l4 + 4..l4 + 8].copy_from_slice(&packet.tcp_seq.to_be_bytes());
            buf[l4 + 8..l4 + 12].copy_from_slice(&packet.tcp_ack.to_be_bytes());
            buf[l4 + 12] = 5 << 4;
            buf[l4 + 13] = packet.tcp_flags;
            20
        }
        17 => {
            buf[l4 + 4..l4 + 8].fill(0);
            8
        }
        1 | 58 => {
            buf[l4] = packet.icmp_type;
            buf[l4 + 1] = packet.icmp_code;
            buf[l4 + 2] = 0;
            buf[l4 + 3] = 0;
            // Echo identifier and sequence travel in the port fields of the summary.
            buf[l4 + 4..l4 + 6].copy_from_slice(&packet.sport.to_be_bytes());
            buf[l4 + 6..l4 + 8].copy_from_slice(&packet.dport.to_be_bytes());
            return l4 + 8;
        }
        _ => return l4,
    };
    buf[l4..l4 + 2].copy_from_slice(&packet.sport.to_be_bytes());
    buf[l4 + 2..l4 + 4].copy_from_slice(&packet.dport.to_be_bytes());
    l4 + l4_len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_l3;

    #[test]
    fn rebuilt_headers_parse_back_to_the_same_summary() {
        let mut tcp = PacketSummary {
            l3_proto: ETH_P_IP,
            l4_proto: 6,
            sport: 40000,
            dport: 8080,
            tcp_seq: 7,
            tcp_ack: 9,
            tcp_flags: 0x12,
            ip_id: 0x1234,
            ip_len: 60,
            ttl: 64,
            df: 1,
            ..PacketSummary::default()
        };
        tcp.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        tcp.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let mut udp6 = PacketSummary {
            l3_proto: ETH_P_IPV6,
            l4_proto: 17,
            sport: 5000,
            dport: 53,
            ip_len: 48,
            ttl: 64,
            ..PacketSummary::default()
        };
        udp6.saddr[15] = 1;
        udp6.daddr[15] = 2;
        let echo = PacketSummary {
            l3_proto: ETH_P_IP,
            l4_proto: 1,
            icmp_type: 8,
            sport: 77,
            dport: 3,
            ..PacketSummary::default()
        };
        for summary in [tcp, udp6, echo] {
            let mut buf = [0xaa; HDR_LEN];
            let len = headers_from_summary(&summary, &mut buf);
            let mut parsed = PacketSummary::default();
            parse_l3(&buf, len, summary.l3_proto, &mut parsed);
            assert_eq!(parsed, summary);
        }
    }
}
