//! `tracer bench-pipeline` (hidden; run by `cargo xtask bench`): the userspace pipeline alone,
//! on one core, fed with synthetic records shaped like a real trace: each UDP datagram crosses
//! two namespaces joined by a veth and is seen at the 17 points a real one is. Prints one JSON
//! line of timings; it measures, it does not judge.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use tracer_common::{
    event::{kind, Event, EventHeader, HookDetail, PacketSummary, EVENT_VERSION},
    hook::{Hook, Position, LAST_IMPLIED, SOLE_END},
    parse::ETH_P_IP,
};

use crate::{
    analysis::fate::TraceEnd,
    analysis::journey::{
        from_closed,
        stream::{Closed, Stitcher, Window},
    },
    analysis::Analysis,
    model::recording::{Context as RecordingContext, Recording},
    model::sighting::Names,
    report::output,
    report::stats::Stats,
    report::{line::WallClock, Selection},
    trace::{
        live::{LiveOptions, LiveView},
        session::decode_record,
    },
};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Datagrams to synthesise (17 events each).
    #[arg(long, default_value_t = 60_000)]
    packets: u32,
    /// Flows (source ports) the datagrams are spread over.
    #[arg(long, default_value_t = 1_000)]
    flows: u32,
    /// The CPU to run on.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    /// Stitch with the streaming stitcher (journeys handed out as they close), records made
    /// a thousand datagrams at a time, so that memory shows what stays open.
    #[arg(long)]
    stream: bool,
    /// With --stream: the whole streaming engine (flows, and text lines or JSON records
    /// written to nowhere), not the stitcher alone.
    #[arg(long, value_enum, requires = "stream")]
    engine: Option<crate::report::stdout::Format>,
    /// The points each datagram is seen at: every hook linked (`all`, 17 events), or where
    /// `trace`'s default links them with the tracer alone at tc and netfilter (`needed`: 8
    /// events, three of them first points that imply their last ones).
    #[arg(long, value_enum, default_value = "all")]
    path: PathShape,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum PathShape {
    All,
    Needed,
}

const NETNS_A: u32 = 4026530001;
const NETNS_B: u32 = 4026530002;
const IFINDEX: u32 = 2;

/// The points a datagram from A to B crosses, in order: (hook, position, kind, namespace).
type Point = (Hook, Position, u8, u32);

/// Every hook linked (`--netfilter-hooks all`), and other programs at tc and netfilter.
const PATH: [Point; 17] = [
    (Hook::NfLocalOut, Position::First, kind::SIGHTING, NETNS_A),
    (Hook::NfLocalOut, Position::Last, kind::SIGHTING, NETNS_A),
    (
        Hook::NfPostrouting,
        Position::First,
        kind::SIGHTING,
        NETNS_A,
    ),
    (Hook::NfPostrouting, Position::Last, kind::SIGHTING, NETNS_A),
    (Hook::TcEgress, Position::First, kind::SIGHTING, NETNS_A),
    (Hook::TcEgress, Position::Last, kind::SIGHTING, NETNS_A),
    (Hook::DevXmit, Position::First, kind::SIGHTING, NETNS_A),
    (Hook::DevXmit, Position::Last, kind::SIGHTING, NETNS_A),
    (Hook::NetifReceive, Position::Only, kind::SIGHTING, NETNS_B),
    (Hook::TcIngress, Position::First, kind::SIGHTING, NETNS_B),
    (Hook::TcIngress, Position::Last, kind::SIGHTING, NETNS_B),
    (Hook::NfPrerouting, Position::First, kind::SIGHTING, NETNS_B),
    (Hook::NfPrerouting, Position::Last, kind::SIGHTING, NETNS_B),
    (Hook::NfLocalIn, Position::First, kind::SIGHTING, NETNS_B),
    (Hook::NfLocalIn, Position::Last, kind::SIGHTING, NETNS_B),
    (Hook::Socket, Position::Only, kind::SIGHTING, NETNS_B),
    (Hook::ConsumeSkb, Position::Only, kind::FREE, NETNS_B),
];

/// `trace`'s default on two namespaces where nothing else is registered: LOCAL_IN alone at
/// netfilter, and each first program at tc and netfilter implying its last one.
const NEEDED_PATH: [Point; 8] = [
    (Hook::TcEgress, Position::First, kind::SIGHTING, NETNS_A),
    (Hook::DevXmit, Position::First, kind::SIGHTING, NETNS_A),
    (Hook::DevXmit, Position::Last, kind::SIGHTING, NETNS_A),
    (Hook::NetifReceive, Position::Only, kind::SIGHTING, NETNS_B),
    (Hook::TcIngress, Position::First, kind::SIGHTING, NETNS_B),
    (Hook::NfLocalIn, Position::First, kind::SIGHTING, NETNS_B),
    (Hook::Socket, Position::Only, kind::SIGHTING, NETNS_B),
    (Hook::ConsumeSkb, Position::Only, kind::FREE, NETNS_B),
];

impl PathShape {
    fn points(self) -> &'static [Point] {
        match self {
            PathShape::All => &PATH,
            PathShape::Needed => &NEEDED_PATH,
        }
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    pin_to(args.cpu)?;
    let names = names();
    if args.stream {
        return stream(&args, &names);
    }
    let records = synthesise(0..args.packets, args.flows.max(1), args.path);

    let start = Instant::now();
    let mut sightings = Vec::with_capacity(records.len());
    let mut stats = Stats::default();
    for record in &records {
        decode_record(record, &names, &mut sightings, &mut stats);
    }
    let decoded = start.elapsed();
    drop(records);

    let start = Instant::now();
    let recording = Recording {
        sightings,
        context: RecordingContext::default(),
    };
    let analysis = Analysis::new(recording, None);
    let stitched = start.elapsed();

    let start = Instant::now();
    output::write_json(&mut std::io::sink(), &analysis, &stats)?;
    let written = start.elapsed();

    let events: u64 = stats.events.values().sum();
    println!(
        "{}",
        json!({
            "events": events,
            "packets": analysis.journeys.len(),
            "flows": analysis.flows.len(),
            "decode_s": decoded.as_secs_f64(),
            "stitch_s": stitched.as_secs_f64(),
            "json_s": written.as_secs_f64(),
            "peak_rss_kib": peak_rss_kib(),
        })
    );
    Ok(())
}

/// Ring buffer records, as the kernel programs write them, of datagrams `packets`.
fn synthesise(packets: std::ops::Range<u32>, flows: u32, path: PathShape) -> Vec<Vec<u8>> {
    let path = path.points();
    let mut records = Vec::with_capacity(packets.len() * path.len());
    // A datagram every 6.1 us (all points), its points 300 ns apart.
    let per_packet_ns = path.len() as u64 * 300 + 1_000;
    for i in packets {
        let mut ts_ns = 1_000_000_000 + u64::from(i) * per_packet_ns;
        // The slab hands the same skb addresses out again once they are freed.
        let skb = 0xffff_8880_0000_0000 + u64::from(i % 512) * 0x100;
        let mut packet = PacketSummary {
            l3_proto: ETH_P_IP,
            l4_proto: 17,
            sport: 10_000 + (i % flows) as u16,
            dport: 5201,
            ip_id: i & 0xffff,
            pkt_len: 92,
            ip_len: 92,
            ttl: 64,
            ..PacketSummary::default()
        };
        packet.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        packet.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        for &(hook, position, kind, netns) in path {
            ts_ns += 300;
            let header = EventHeader {
                version: EVENT_VERSION,
                kind,
                hook: hook as u8,
                position: position as u8,
                len: std::mem::size_of::<Event>() as u16,
                cpu: 0,
                ifindex: IFINDEX,
                netns,
                ts_ns,
                skb,
                lost_before: 0,
                _pad: 0,
            };
            // The driver's answer knows only the skb, like `net_dev_xmit`.
            let knows_headers = !(hook == Hook::DevXmit && position == Position::Last);
            let event = Event {
                header,
                packet: if knows_headers {
                    packet
                } else {
                    PacketSummary::default()
                },
                detail: HookDetail {
                    verdict: if kind == kind::FREE {
                        // No clone shares it: the kernel's read of its `dataref`.
                        SOLE_END
                    } else {
                        implies_last(hook, position, path)
                    },
                    ..HookDetail::default()
                },
                tunnel: Default::default(),
            };
            records.push(as_bytes(&event).to_vec());
        }
    }
    records
}

/// Where the path has no last point for a first one at tc or netfilter, the first one says it
/// implies it, as the kernel programs do where they are the hook's only ones.
fn implies_last(hook: Hook, position: Position, path: &[Point]) -> u32 {
    let last_seen = path
        .iter()
        .any(|&(h, p, _, _)| h == hook && p == Position::Last);
    if hook.brackets_others() && position == Position::First && !last_seen {
        LAST_IMPLIED
    } else {
        0
    }
}

/// A ring read hands out about a thousand records at a time. (Taken from the front of the
/// chunk's vector by an iterator: draining the front moved the rest each time, a cost of the
/// bench's own that was counted as the engine's.)
const RING_READ: usize = 1024;

/// Decode and the streaming stitcher, timed apart from making the records.
fn stream(args: &BenchArgs, names: &Names) -> Result<()> {
    const CHUNK: u32 = 1_000;
    let end = TraceEnd::default();
    let mut stitcher = Stitcher::new(Window::default());
    let (mut decode_s, mut stream_s) = (0.0, 0.0);
    let (mut journeys, mut held_out, mut most_open) = (0u64, 0u64, 0);
    let mut stats = Stats::default();
    if let Some(format) = args.engine {
        return engine(args, names, format);
    }
    let mut complete = |closed: Vec<Closed>| {
        for c in closed {
            held_out += u64::from(c.held_out);
            journeys += from_closed(c, &end, journeys + 1).len() as u64;
        }
    };
    for first in (0..args.packets).step_by(CHUNK as usize) {
        let records = synthesise(
            first..args.packets.min(first + CHUNK),
            args.flows.max(1),
            args.path,
        );
        let start = Instant::now();
        let mut sightings = Vec::with_capacity(records.len());
        for record in &records {
            decode_record(record, names, &mut sightings, &mut stats);
        }
        decode_s += start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut sightings = sightings.into_iter().peekable();
        while sightings.peek().is_some() {
            for s in sightings.by_ref().take(RING_READ) {
                stitcher.push(s);
            }
            complete(stitcher.advance());
            most_open = most_open.max(stitcher.open_journeys());
        }
        stream_s += start.elapsed().as_secs_f64();
    }
    let start = Instant::now();
    complete(stitcher.finish());
    stream_s += start.elapsed().as_secs_f64();
    let events: u64 = stats.events.values().sum();
    println!(
        "{}",
        json!({
            "events": events,
            "packets": journeys,
            "most_open": most_open,
            "held_out": held_out,
            "decode_s": decode_s,
            "stream_s": stream_s,
            "peak_rss_kib": peak_rss_kib(),
        })
    );
    Ok(())
}

/// Decode and the whole streaming engine, writing to nowhere.
fn engine(args: &BenchArgs, names: &Names, format: crate::report::stdout::Format) -> Result<()> {
    const CHUNK: u32 = 1_000;
    let options = LiveOptions {
        selection: Selection::All,
        paths: false,
        format,
        summary_every_ns: None,
    };
    let mut view = LiveView::new(Vec::new(), options, WallClock::from_offset(0));
    view.write_to(Box::new(std::io::sink()));
    let (mut decode_s, mut stream_s) = (0.0, 0.0);
    let mut stats = Stats::default();
    let mut packets = 0;
    for first in (0..args.packets).step_by(CHUNK as usize) {
        let records = synthesise(
            first..args.packets.min(first + CHUNK),
            args.flows.max(1),
            args.path,
        );
        let start = Instant::now();
        let mut sightings = Vec::with_capacity(records.len());
        for record in &records {
            decode_record(record, names, &mut sightings, &mut stats);
        }
        decode_s += start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut sightings = sightings.into_iter().peekable();
        while sightings.peek().is_some() {
            for s in sightings.by_ref().take(RING_READ) {
                view.push(s);
            }
            packets += view.advance(None);
        }
        stream_s += start.elapsed().as_secs_f64();
    }
    let start = Instant::now();
    view.finish(&[])
        .report(&RecordingContext::default(), &stats)?;
    stream_s += start.elapsed().as_secs_f64();
    let events: u64 = stats.events.values().sum();
    println!(
        "{}",
        json!({
            "events": events,
            "packets_written_live": packets,
            "decode_s": decode_s,
            "stream_s": stream_s,
            "peak_rss_kib": peak_rss_kib(),
        })
    );
    Ok(())
}

fn as_bytes(event: &Event) -> &[u8] {
    // SAFETY: `Event` is `repr(C)` plain integers without padding (size asserted in
    // tracer-common); any of its bytes may be read.
    unsafe {
        std::slice::from_raw_parts(
            (event as *const Event).cast::<u8>(),
            std::mem::size_of::<Event>(),
        )
    }
}

fn names() -> Names {
    let mut names = Names::default();
    names.netns.insert(NETNS_A, "bench-a".into());
    names.netns.insert(NETNS_B, "bench-b".into());
    names.interfaces.insert((NETNS_A, IFINDEX), "va".into());
    names.interfaces.insert((NETNS_B, IFINDEX), "vb".into());
    names
}

fn pin_to(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error())
                .context(format!("cannot pin to CPU {cpu}"));
        }
    }
    Ok(())
}

/// `VmHWM` of this process, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
