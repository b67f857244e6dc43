//! The hostile frames of `hostile.rs`, each with what the tracer must report of it.

use serde_json::{json, Value};
use tests::{
    frames::{
        self, tcp_syn, udp, Ext, Ipv4, Macs, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP, IPPROTO_UDP,
        TPID_8021AD, TPID_8021Q,
    },
    ADDR_A, ADDR_B,
};

const V4_A: [u8; 4] = [10, 201, 0, 1];
const V4_B: [u8; 4] = [10, 201, 0, 2];
const V6_A: &str = "fd00:201::1";
const V6_B: &str = "fd00:201::2";

fn v6(text: &str) -> [u8; 16] {
    text.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// What the tracer must report of a frame's headers.
#[derive(Clone, Debug)]
pub struct Want {
    pub src: Option<&'static str>,
    pub dst: Option<&'static str>,
    pub proto: &'static str,
    pub sport: u16,
    pub dport: u16,
    /// IPv4 id or IPv6 flow label: unique per frame, so each can be found.
    pub ip_id: u32,
    /// The length the IP header claims (IPv6: payload length + 40).
    pub ip_len: u16,
    /// The outermost VLAN id (0: untagged).
    pub vlan: u16,
}

impl Want {
    fn v4(proto: &'static str, ports: (u16, u16), ip_id: u16, ip_len: usize) -> Want {
        Want {
            src: Some(ADDR_A),
            dst: Some(ADDR_B),
            proto,
            sport: ports.0,
            dport: ports.1,
            ip_id: ip_id.into(),
            ip_len: ip_len as u16,
            vlan: 0,
        }
    }

    fn v6(proto: &'static str, ports: (u16, u16), flow: u32, ip_len: usize) -> Want {
        Want {
            src: Some(V6_A),
            dst: Some(V6_B),
            ip_id: flow,
            ..Want::v4(proto, ports, 0, ip_len)
        }
    }

    /// No IP header to read: no addresses, no protocol, nothing.
    fn nothing() -> Want {
        Want {
            src: None,
            dst: None,
            ..Want::v4("unknown", (0, 0), 0, 0)
        }
    }

    fn tagged(self, vlan: u16) -> Want {
        Want { vlan, ..self }
    }
}

pub struct Case {
    pub name: &'static str,
    pub frame: Vec<u8>,
    /// VLAN tags on the wire: the kernel takes the outermost off before the tap and tc.
    pub tags: usize,
    pub want: Want,
    /// Whether the kernel lets it reach the tap (tcpdump) and tc ingress.
    pub reaches_tap: bool,
    /// Whether the sender's skb holds the IP header in its linear part, where the transmit
    /// tracepoint reads: AF_PACKET puts only the Ethernet header there in a frame bigger than
    /// a page, the rest in page fragments.
    pub linear: bool,
}

impl Case {
    fn new(name: &'static str, frame: Vec<u8>, want: Want) -> Case {
        Case {
            name,
            frame,
            tags: 0,
            want,
            reaches_tap: true,
            linear: true,
        }
    }

    fn tags(self, tags: usize) -> Case {
        Case { tags, ..self }
    }

    /// The length a point reports: the frame at XDP and on the way out; at tc ingress without
    /// the tag the kernel took off; at `netif_receive` from the Ethernet payload on.
    pub fn len_at(&self, hook: &str) -> usize {
        match hook {
            "tc_ingress" => self.frame.len() - 4 * self.tags.min(1),
            "netif_receive" => self.frame.len() - 14,
            _ => self.frame.len(),
        }
    }

    /// The fields a point must report, as [`fields`] lists them.
    pub fn expected(&self, hook: &str) -> Value {
        let w = match hook {
            // Headers it cannot reach are no headers, not whatever lies past the linear part.
            "dev_xmit" if !self.linear => &Want::nothing(),
            _ => &self.want,
        };
        // Only XDP and tc read the link layer.
        let vlan = match hook {
            "xdp" | "tc_ingress" | "tc_egress" => w.vlan,
            _ => 0,
        };
        json!([
            w.src,
            w.dst,
            w.proto,
            w.sport,
            w.dport,
            w.ip_id,
            w.ip_len,
            self.len_at(hook),
            vlan
        ])
    }
}

/// The fields of a recorded event that [`Case::expected`] lists.
pub fn fields(e: &Value) -> Value {
    json!([
        e["src"],
        e["dst"],
        e["proto"],
        e["sport"],
        e["dport"],
        e["ip_id"],
        e["ip_len"],
        e["len"],
        e["vlan"].as_u64().unwrap_or(0)
    ])
}

fn v4(proto: u8, id: u16) -> Ipv4 {
    Ipv4::new(V4_A, V4_B, proto, id)
}

fn ip6(flow: u32, exts: &[Ext], proto: u8, upper: &[u8]) -> Vec<u8> {
    frames::ipv6(v6(V6_A), v6(V6_B), flow, exts, proto, upper)
}

fn frag6(offset: u16, more: bool, id: u32) -> Ext {
    Ext::Fragment { offset, more, id }
}

/// Every hostile frame, from `a`'s `va` to `b`'s `vb`. Ports 48xxx/49xxx (IPv4) and
/// 46xxx/47xxx (IPv6), IPv4 ids 0x48xx and IPv6 flow labels 0x460xx tell them apart; ports
/// 1111/2222 are bytes that must not be read as ports.
pub fn hostile(macs: &Macs) -> Vec<Case> {
    let eth4 = |payload: &[u8]| macs.frame(&[], ETH_P_IP, payload);
    let eth6 = |payload: &[u8]| macs.frame(&[], ETH_P_IPV6, payload);
    let (w4, w6, none) = (Want::v4, Want::v6, Want::nothing);
    // A later fragment's payload that looks like a UDP header.
    let decoy = udp(1111, 2222, &[0; 8]);
    let hbh_dest = [Ext::HopByHop(8), Ext::DestOpts(16)];
    let hbh_routing_dest = [Ext::HopByHop(8), Ext::Routing, Ext::DestOpts(8)];
    let udp4 = |id: u16, port: u16| v4(IPPROTO_UDP, id).packet(&udp(port, port + 1000, &[]));
    let (q, ad) = (TPID_8021Q, TPID_8021AD);
    vec![
        Case::new(
            "udp-baseline",
            eth4(&v4(IPPROTO_UDP, 0x4801).packet(&udp(48001, 49001, &[7; 16]))),
            w4("udp", (48001, 49001), 0x4801, 44),
        ),
        Case::new(
            "udp-no-payload",
            eth4(&udp4(0x4802, 48002)),
            w4("udp", (48002, 49002), 0x4802, 28),
        ),
        Case::new(
            "ipv4-router-alert-tcp",
            eth4(
                &v4(IPPROTO_TCP, 0x4803)
                    .with_options(vec![0x94, 4, 0, 0])
                    .packet(&tcp_syn(48003, 49003, 0x4803_0000)),
            ),
            w4("tcp", (48003, 49003), 0x4803, 44),
        ),
        Case::new(
            "ipv4-40-bytes-of-options-udp",
            eth4(
                &v4(IPPROTO_UDP, 0x4804)
                    .with_options(record_route())
                    .packet(&udp(48004, 49004, &[4; 4])),
            ),
            w4("udp", (48004, 49004), 0x4804, 72),
        ),
        Case::new(
            "ipv4-first-fragment",
            eth4(
                &v4(IPPROTO_UDP, 0x4805)
                    .with_frag(0x2000)
                    .packet(&udp(48005, 49005, &[5; 24])),
            ),
            w4("udp", (48005, 49005), 0x4805, 52),
        ),
        Case::new(
            "ipv4-later-fragment",
            eth4(&v4(IPPROTO_UDP, 0x4806).with_frag(4).packet(&decoy)),
            w4("udp", (0, 0), 0x4806, 36),
        ),
        Case::new(
            "ipv4-claims-more-than-it-has",
            eth4(
                &v4(IPPROTO_UDP, 0x4807)
                    .claiming(1000)
                    .packet(&udp(48007, 49007, &[7; 4])),
            ),
            w4("udp", (48007, 49007), 0x4807, 1000),
        ),
        // 4 bytes of transport claimed, a whole UDP header sent: the rest is not the packet's.
        Case::new(
            "ipv4-claims-less-than-it-has",
            eth4(&v4(IPPROTO_UDP, 0x4808).claiming(24).packet(&decoy)),
            w4("udp", (0, 0), 0x4808, 24),
        ),
        Case::new(
            "ipv4-truncated-udp-header",
            eth4(&v4(IPPROTO_UDP, 0x4809).packet(&decoy[..4])),
            w4("udp", (0, 0), 0x4809, 24),
        ),
        Case::new(
            "ipv4-truncated-ip-header",
            eth4(&v4(IPPROTO_UDP, 0x480a).packet(&[])[..12]),
            none(),
        ),
        Case::new(
            "ipv4-header-length-below-20",
            eth4(&ihl_4(v4(IPPROTO_UDP, 0x480b).packet(&decoy[..12]))),
            w4("udp", (0, 0), 0x480b, 32),
        ),
        Case::new("ethernet-header-only", eth4(&[]), none()),
        Case::new(
            "ipv4-ethertype-on-an-ipv6-packet",
            eth4(&ip6(0x46008, &[], IPPROTO_UDP, &decoy[..8])),
            none(),
        ),
        Case::new(
            "ipv6-udp-baseline",
            eth6(&ip6(0x46001, &[], IPPROTO_UDP, &udp(46001, 47001, &[1; 8]))),
            w6("udp", (46001, 47001), 0x46001, 56),
        ),
        Case::new(
            "ipv6-hop-by-hop-dest-opts-udp",
            eth6(&ip6(
                0x46002,
                &hbh_dest,
                IPPROTO_UDP,
                &udp(46002, 47002, &[]),
            )),
            w6("udp", (46002, 47002), 0x46002, 72),
        ),
        Case::new(
            "ipv6-hop-by-hop-routing-dest-opts-tcp",
            eth6(&ip6(
                0x46003,
                &hbh_routing_dest,
                IPPROTO_TCP,
                &tcp_syn(46003, 47003, 0x4600_3000),
            )),
            w6("tcp", (46003, 47003), 0x46003, 84),
        ),
        Case::new(
            "ipv6-first-fragment",
            eth6(&ip6(
                0x46004,
                &[frag6(0, true, 0x46004)],
                IPPROTO_UDP,
                &udp(46004, 47004, &[4; 8]),
            )),
            w6("udp", (46004, 47004), 0x46004, 64),
        ),
        Case::new(
            "ipv6-later-fragment",
            eth6(&ip6(
                0x46005,
                &[frag6(2, false, 0x46005)],
                IPPROTO_UDP,
                &decoy,
            )),
            w6("udp", (0, 0), 0x46005, 64),
        ),
        // The transport header starts beyond the bytes a point copies (128 from the IP header).
        Case::new(
            "ipv6-transport-beyond-the-headers-copied",
            eth6(&ip6(
                0x46006,
                &[Ext::DestOpts(104)],
                IPPROTO_UDP,
                &decoy[..8],
            )),
            w6("udp", (0, 0), 0x46006, 152),
        ),
        // A hop-by-hop header of 16 bytes cut after 4: its next header (UDP) is all it gives.
        Case::new(
            "ipv6-truncated-extension-header",
            eth6(&ip6(0x46007, &[Ext::HopByHop(16)], IPPROTO_UDP, &[])[..44]),
            w6("udp", (0, 0), 0x46007, 56),
        ),
        Case::new(
            "vlan-8021q",
            macs.frame(&[(q, 100)], ETH_P_IP, &udp4(0x480d, 48013)),
            w4("udp", (48013, 49013), 0x480d, 28).tagged(100),
        )
        .tags(1),
        Case::new(
            "qinq-8021ad-8021q",
            macs.frame(&[(ad, 200), (q, 300)], ETH_P_IP, &udp4(0x480e, 48014)),
            w4("udp", (48014, 49014), 0x480e, 28).tagged(200),
        )
        .tags(2),
        // Untagging needs two bytes past the tag: the kernel frees it before the tap.
        Case {
            reaches_tap: false,
            ..Case::new(
                "vlan-tag-and-nothing-after",
                macs.frame(&[(q, 101)], ETH_P_IP, &[]),
                none().tagged(101),
            )
            .tags(1)
        },
    ]
}

/// Two frames near a 9000-byte MTU, the IPv4 one as big as it allows (9014 bytes); lengths
/// differ, as the transmit tracepoint may know them by nothing else.
pub fn jumbo(macs: &Macs) -> Vec<Case> {
    let payload = vec![0x5a; 9000 - 20 - 8];
    let v4 = v4(IPPROTO_UDP, 0x4820).packet(&udp(48020, 49020, &payload));
    let behind_hbh = &payload[..8992 - 40 - 8 - 8];
    let v6 = ip6(
        0x46020,
        &[Ext::HopByHop(8)],
        IPPROTO_UDP,
        &udp(46020, 47020, behind_hbh),
    );
    [
        Case::new(
            "jumbo-ipv4-udp",
            macs.frame(&[], ETH_P_IP, &v4),
            Want::v4("udp", (48020, 49020), 0x4820, 9000),
        ),
        Case::new(
            "jumbo-ipv6-hop-by-hop-udp",
            macs.frame(&[], ETH_P_IPV6, &v6),
            Want::v6("udp", (46020, 47020), 0x46020, 8992),
        ),
    ]
    .map(|case| Case {
        linear: false,
        ..case
    })
    .into()
}

/// Record Route filling all 40 bytes of options: the transport header at offset 60.
fn record_route() -> Vec<u8> {
    let mut option = vec![7, 39, 4];
    option.resize(39, 0);
    option.push(0); // end of options
    option
}

/// The header length field set to 4 (16 bytes), below the minimum; checksum made right again.
fn ihl_4(mut packet: Vec<u8>) -> Vec<u8> {
    packet[0] = 0x44;
    packet[10..12].copy_from_slice(&[0, 0]);
    let sum = frames::checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    packet
}
