//! Properties of event decoding: whatever the ring buffer hands over (any bytes, records cut
//! short, another version, unknown hook, kind and position ids, capture lengths beyond the
//! record) becomes a sighting or is counted as undecodable, never a panic; and a stream of
//! such sightings goes through journeys, flows, explanations and both outputs.
//!
//! `PROPTEST_CASES` sets the cases per property; `cargo xtask fuzz` runs them for longer.

use proptest::{collection::vec, prelude::*, sample::select};
use tracer_common::{
    event::{CaptureHeader, Event, EventHeader, HookDetail, PacketSummary, EVENT_VERSION},
    hook::{Hook, Position},
};

use super::*;
use crate::fuzzing::check;
use crate::model::recording::NamespaceCounters;
use crate::{
    analysis::fate::TraceEnd, analysis::Analysis, kernel::kallsyms::Kallsyms,
    model::recording::Context, model::sighting::Proto, report::output, report::paint::Paint,
};

const EVENT_LEN: usize = std::mem::size_of::<Event>();
/// Where the hook id sits in an event (`EventHeader::hook`, after version and kind).
const HOOK_AT: usize = std::mem::offset_of!(tracer_common::event::EventHeader, hook);
const CAPTURE_AT: usize = EVENT_LEN + std::mem::size_of::<CaptureHeader>();

/// The bytes of a wire record: `T` is `#[repr(C)]`, integers only, without implicit padding
/// (the size asserts in `tracer_common::event`).
fn bytes_of<T: Copy>(value: &T) -> Vec<u8> {
    // SAFETY: `value` is a live `T` of `size_of::<T>()` bytes, read as bytes for as long as
    // it is borrowed. Every byte is initialised because the only `T`s passed are `Event` and
    // `CaptureHeader`, which have no padding (see above).
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
    .to_vec()
}

/// A ring buffer record: an event, maybe a capture header and bytes, maybe cut short.
#[derive(Clone, Debug)]
struct Record {
    event: Event,
    capture: Option<CaptureHeader>,
    data: Vec<u8>,
    /// Keep only this many bytes (a record cut short, or shorter than its header says).
    cut: Option<usize>,
}

impl Record {
    fn bytes(&self) -> Vec<u8> {
        let mut b = bytes_of(&self.event);
        if let Some(capture) = &self.capture {
            b.extend(bytes_of(capture));
            b.extend_from_slice(&self.data);
        }
        if let Some(cut) = self.cut {
            b.truncate(cut);
        }
        b
    }
}

/// Ids mostly from the real sets, sometimes anything (a newer kernel side, a corrupt record).
fn id(known: &'static [u8]) -> impl Strategy<Value = u8> {
    prop_oneof![4 => select(known), 1 => any::<u8>()]
}

fn summary() -> impl Strategy<Value = PacketSummary> {
    let l3 = prop_oneof![
        Just(0x0800u16),
        Just(0x86dd),
        Just(0),
        Just(0x0806),
        any::<u16>()
    ];
    let l4 = prop_oneof![Just(6u8), Just(17), Just(1), Just(58), any::<u8>()];
    let ports = (select(&[0u16, 53, 80, 8080, 40000][..]), any::<u16>());
    let numbers = (
        select(&[0u32, 1, 7, 1000][..]),
        any::<[u32; 3]>(),
        any::<[u16; 3]>(),
    );
    (l3, l4, ports, numbers, any::<[u8; 6]>(), any::<[u8; 2]>()).prop_map(
        |(
            l3_proto,
            l4_proto,
            (sport, dport),
            (seq, [ack, len, mark], [ip_len, gso, vlan]),
            b,
            a,
        )| {
            let mut p = PacketSummary {
                l3_proto,
                vlan,
                l4_proto,
                tcp_flags: b[0],
                icmp_type: b[1] % 4,
                icmp_code: b[2],
                sport,
                dport,
                ip_id: (b[3] % 3) as u32,
                tcp_seq: seq,
                tcp_ack: ack,
                pkt_len: len % 2000,
                ip_len,
                gso_segs: gso % 4,
                mark,
                ttl: b[4],
                df: b[5] % 2,
                ..PacketSummary::default()
            };
            // A few hosts, so that packets pair up into flows and replies.
            p.saddr[..2].copy_from_slice(&[10, a[0] % 3]);
            p.daddr[..2].copy_from_slice(&[10, a[1] % 3]);
            p
        },
    )
}

fn event() -> impl Strategy<Value = Event> {
    let header = (
        prop_oneof![8 => Just(EVENT_VERSION), 1 => any::<u8>()],
        id(&[1, 2, 3]),
        id(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]),
        id(&[0, 1, 2]),
        any::<u16>(),
        (select(&[1u32, 2, 3][..]), select(&[1u32, 2, 3][..])),
        prop_oneof![3 => 0..5_000u64, 1 => any::<u64>()],
        prop_oneof![Just(0u64), 1..4u64, any::<u64>()],
    );
    let detail = (any::<u64>(), select(&[0u32, 2, 5, 254][..]), any::<u32>());
    (header, summary(), detail).prop_map(
        |((version, kind, hook, position, len, (ifindex, netns), ts, skb), packet, d)| Event {
            tunnel: Default::default(),
            header: EventHeader {
                version,
                kind,
                hook,
                position,
                len,
                cpu: (ts % 4) as u16,
                ifindex,
                netns,
                ts_ns: ts,
                skb,
                lost_before: 0,
                _pad: 0,
            },
            packet,
            detail: HookDetail {
                location: d.0,
                reason: d.1,
                verdict: d.2,
            },
        },
    )
}

fn record() -> impl Strategy<Value = Record> {
    let capture = (any::<u8>(), 0..400u16, any::<u32>()).prop_map(|(link, cap_len, orig_len)| {
        CaptureHeader {
            link: link % 4,
            _pad: 0,
            cap_len,
            orig_len,
        }
    });
    let cut = prop_oneof![3 => Just(None), 1 => (0..CAPTURE_AT + 300).prop_map(Some)];
    (
        event(),
        prop::option::of(capture),
        vec(any::<u8>(), 0..300),
        cut,
    )
        .prop_map(|(event, capture, data, cut)| Record {
            event,
            capture,
            data,
            cut,
        })
}

/// Which names a session resolved (`Names` itself has no `Debug` for proptest to print):
/// a foreign XDP program on the first interface, and drop and reset reason names.
type NameChoice = (bool, bool);

/// Names as a session resolves them: some ids known, most not.
fn names((xdp, reasons): NameChoice) -> Names {
    let kallsyms = "ffffffff81000000 T _stext\nffffffff81a00000 t nf_hook_slow\n\
                    ffffffff81b00000 T xdp_do_redirect\nffffffff81c00000 T tcp_v4_rcv\n";
    let mut names = Names {
        kallsyms: Kallsyms::parse(kallsyms),
        ..Names::default()
    };
    names.netns.insert(1, "ns-a".into());
    names.interfaces.insert((1, 1), "veth0".into());
    names.interfaces.insert((2, 2), "eth0".into());
    if xdp {
        names
            .foreign_xdp
            .insert((1, 1), "xdp_drop (id 7)".to_string());
    }
    if reasons {
        names.drop_reasons.insert(2, "NO_SOCKET".to_string());
        names.reset_reasons.insert(2, "NOT_SPECIFIED".to_string());
    }
    names
}

#[test]
fn any_bytes_decode_to_a_sighting_or_count_as_undecodable() {
    // Half the time a record that passes the version check, so that field decoding runs.
    let strategy = (
        vec(any::<u8>(), 0..CAPTURE_AT + 300),
        any::<bool>(),
        any::<NameChoice>(),
    );
    check(
        "any_bytes_decode_to_a_sighting_or_count_as_undecodable",
        4096,
        strategy,
        |(mut bytes, versioned, names_choice)| {
            let names = names(names_choice);
            if versioned && !bytes.is_empty() {
                bytes[0] = EVENT_VERSION;
            }
            let (mut sightings, mut stats) = (Vec::new(), Stats::default());
            decode_record(&bytes, &names, &mut sightings, &mut stats);
            // An event of a hook this build does not know is another build's: undecodable.
            let decodable = bytes.len() >= EVENT_LEN
                && bytes[0] == EVENT_VERSION
                && Hook::from_u8(bytes[HOOK_AT]).is_some();
            prop_assert_eq!(sightings.len(), decodable as usize);
            prop_assert_eq!(stats.undecodable, !decodable as u64);
            prop_assert_eq!(stats.events.values().sum::<u64>(), sightings.len() as u64);
            Ok(())
        },
    );
}

#[test]
fn records_decode_to_their_fields_or_count_as_undecodable() {
    check(
        "records_decode_to_their_fields_or_count_as_undecodable",
        2048,
        (record(), any::<NameChoice>()),
        |(record, names_choice)| {
            let names = names(names_choice);
            let bytes = record.bytes();
            let (mut sightings, mut stats) = (Vec::new(), Stats::default());
            decode_record(&bytes, &names, &mut sightings, &mut stats);
            let (h, p) = (&record.event.header, &record.event.packet);
            let known_hook = Hook::from_u8(h.hook);
            if bytes.len() < EVENT_LEN || h.version != EVENT_VERSION || known_hook.is_none() {
                prop_assert!(sightings.is_empty());
                prop_assert_eq!(stats.undecodable, 1);
                return Ok(());
            }
            prop_assert_eq!(sightings.len(), 1);
            let s = &sightings[0];
            let hook = known_hook.map_or("unknown", Hook::name);
            prop_assert_eq!(s.hook.name(), hook);
            prop_assert_eq!(stats.events.get(hook), Some(1));
            let position = match Position::from_u8(h.position) {
                Position::Only => None,
                Position::First => Some("first"),
                Position::Last => Some("last"),
            };
            prop_assert_eq!(s.position.name(), position);
            prop_assert_eq!((s.ts_ns, s.cpu, s.skb), (h.ts_ns, h.cpu, h.skb));
            prop_assert_eq!((s.netns, s.ifindex), (h.netns, h.ifindex));
            prop_assert_eq!(s.proto, Proto::from_numbers(p.l3_proto, p.l4_proto));
            prop_assert_eq!((s.sport, s.dport, s.ip_id), (p.sport, p.dport, p.ip_id));
            prop_assert_eq!((s.len, s.ip_len, s.mark), (p.pkt_len, p.ip_len, p.mark));
            prop_assert_eq!(
                s.reason.is_some(),
                h.kind == tracer_common::event::kind::DROP
            );
            // Packet bytes only when the whole capture lies inside the record.
            let capture = record.capture.filter(|c| {
                c.link != 0 && c.cap_len > 0 && bytes.len() >= CAPTURE_AT + c.cap_len as usize
            });
            match (&s.bytes, capture) {
                (None, None) => {}
                (Some(got), Some(c)) => {
                    let data = &bytes[CAPTURE_AT..CAPTURE_AT + c.cap_len as usize];
                    prop_assert_eq!(&got.data[..], data);
                    prop_assert_eq!(got.ethernet, c.link == 1);
                    prop_assert_eq!(got.orig_len, c.orig_len.max(c.cap_len as u32));
                }
                (got, expected) => prop_assert!(false, "bytes {:?}, expected {:?}", got, expected),
            }
            Ok(())
        },
    );
}

fn live_capture() -> impl Strategy<Value = LiveCapture> {
    (1..5u32, 1..4u32, 0..4u32, any::<u64>()).prop_map(|(pid, netns, ifindex, inode)| LiveCapture {
        pid,
        command: "tcpdump".to_string(),
        netns,
        ifindex,
        inode,
    })
}

fn counters() -> impl Strategy<Value = NamespaceCounters> {
    let name = select(
        &[
            "Tcp.OutRsts",
            "Tcp.RetransSegs",
            "Icmp.OutDestUnreachs",
            "Ip.X",
        ][..],
    );
    vec((name, any::<i64>()), 0..4).prop_map(|delta| NamespaceCounters {
        netns_name: "ns-a".to_string(),
        delta: delta.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    })
}

/// Renders `analysis` both ways; every JSON line must parse.
fn render(analysis: &Analysis, stats: &Stats) -> Result<(), TestCaseError> {
    let mut json = Vec::new();
    output::write_json(&mut json, analysis, stats).expect("writing to memory");
    for line in String::from_utf8(json).expect("UTF-8").lines() {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        prop_assert!(parsed.is_ok(), "not JSON: {}", line);
    }
    for paint in [Paint::Plain, Paint::Ansi] {
        output::write_text(&mut Vec::new(), analysis, stats, paint).expect("writing to memory");
    }
    Ok(())
}

/// Streams of decoded events, in any order and with any ids, build journeys, flows and
/// explanations, and print as text and JSON, without a panic: `trace` and `explain` do this
/// with whatever the kernel (or a recording) gave them.
#[test]
fn decoded_streams_explain_without_panic() {
    let stream = vec(record(), 0..40);
    let end = (prop_oneof![Just(0u64), 0..6_000u64, any::<u64>()], 0..3u64);
    let context = (vec(live_capture(), 0..3), vec(counters(), 0..2), end);
    let limit = prop_oneof![3 => Just(None), 1 => (0..5usize).prop_map(Some)];
    check(
        "decoded_streams_explain_without_panic",
        128,
        (stream, any::<NameChoice>(), context, limit),
        |(stream, names_choice, (live, counters, (end_ns, lost)), limit)| {
            let names = names(names_choice);
            let (mut sightings, mut stats) = (Vec::new(), Stats::default());
            for record in &stream {
                decode_record(&record.bytes(), &names, &mut sightings, &mut stats);
            }
            let recording = Recording {
                sightings,
                context: Context {
                    live,
                    counters,
                    rules: Vec::new(),
                    rule_snapshots: Vec::new(),
                    end: TraceEnd {
                        end_ns,
                        lost,
                        gaps: Vec::new(),
                        partial_hooks: Vec::new(),
                    },
                    clock: None,
                },
            };
            render(&Analysis::new(recording, limit), &stats)
        },
    );
}

/// Packets seen along paths of hooks, each packet on its own skb and in time order: the
/// streams above are mostly noise, these are mostly journeys.
#[test]
fn plausible_paths_explain_without_panic() {
    let path = vec(
        (
            select(&[1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16][..]),
            0..3u8,
        ),
        1..12,
    );
    check(
        "plausible_paths_explain_without_panic",
        256,
        (vec((path, event()), 1..6), any::<NameChoice>()),
        |(packets, names_choice)| {
            let names = names(names_choice);
            let (mut sightings, mut stats) = (Vec::new(), Stats::default());
            for (n, (path, template)) in packets.iter().enumerate() {
                for (step, (hook, position)) in path.iter().enumerate() {
                    let mut event = *template;
                    event.header.version = EVENT_VERSION;
                    event.header.hook = *hook;
                    event.header.position = *position;
                    event.header.kind = match hook {
                        13 => 2,
                        14 => 3,
                        _ => 1,
                    };
                    event.header.ts_ns = (n * 1000 + step * 10) as u64;
                    event.header.skb = 1 + n as u64;
                    decode_record(&bytes_of(&event), &names, &mut sightings, &mut stats);
                }
            }
            let recording = Recording {
                sightings,
                context: Context::default(),
            };
            render(&Analysis::new(recording, None), &stats)
        },
    );
}
