//! `tracer trace`: attach, collect until the duration ends or a signal comes, report.

use std::{fs, path::PathBuf, time::Duration};

use anyhow::{Context, Result};
use std::io::IsTerminal;

use clap::Args;
use tracer_common::event::{SNAP_HEADERS, SNAP_MAX};

pub use crate::report::stdout::{report, Format};
use crate::{
    analysis::Analysis,
    kernel::filter,
    kernel::loader::TcMode,
    kernel::netfilter::NetfilterHooks,
    model::recording,
    report::packet_file::{self, PacketFile, Snap},
    report::Selection,
    trace::live::LiveOptions,
    trace::session::{self, PointFamily, TraceOptions},
    trace::usage::Usage,
};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  tracer trace -n client -n server 'tcp port 8080'
      follow every TCP packet to or from port 8080 through both namespaces
  tracer trace -i eth0 -c 10 icmp
      the journeys of the first 10 ICMP packets that enter or leave by eth0
  tracer trace --duration 5 --format json 'host 10.0.0.1 and not port 22' > trace.jsonl
      five seconds of JSON lines, one record per packet, flow and summary
  tracer trace --record events.jsonl ... ; tracer explain events.jsonl
      record the raw events, explain them later without root")]
pub struct TraceArgs {
    /// Network namespace to trace: a name under /run/netns, a path, pid:N, or `all`. Repeatable.
    #[arg(short = 'n', long = "netns")]
    pub netns: Vec<String>,
    /// Interface to attach XDP and tc programs to (default: every interface but lo). Repeatable.
    #[arg(short = 'i', long = "interface")]
    pub interfaces: Vec<String>,
    /// Stop after this many seconds (default: on Ctrl-C or SIGTERM).
    #[arg(long, value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// Stop after this many packets, and report only those (like `tcpdump -c`).
    #[arg(short = 'c', long = "count", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Report each packet as soon as its journey ends, while the trace runs: a line (time,
    /// addresses, flags, length, and what became of it; a drop with where, why and what
    /// tcpdump saw) or with --format json a record; each flow when it ends and at exit. Keeps
    /// only what is still open, so a trace can run for hours. On by default for text on a
    /// terminal (without it, every packet's path when the trace stops).
    #[arg(long)]
    pub live: bool,
    /// Show only the packets that did not make it (dropped, or their end not seen) and their
    /// flows: in the live lines, the text report and the JSON output.
    #[arg(long)]
    pub problems: bool,
    /// With the live view in text, a line per open flow every this many seconds, with why for
    /// those where a packet did not make it (as at exit).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub summary_every: Option<Duration>,
    /// With the live view, each packet's path point by point under its line (where tcpdump's
    /// taps sit among them).
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Create this file once every program is attached (for scripts and tests).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Write the raw event stream as JSON lines to this file (replay with `tracer explain`).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Write every traced packet with its bytes to this pcapng file, for Wireshark: one
    /// interface per observation point and interface, comments with fate and tcpdump verdict.
    #[arg(short = 'w', long = "write", value_name = "FILE.pcapng")]
    pub write: Option<PathBuf>,
    /// Bytes of each packet to write with -w (default: headers only, up to the end of the
    /// transport header; payloads may hold secrets). 0 means as many as the tracer copies.
    #[arg(short = 's', long, requires = "write")]
    pub snaplen: Option<u32>,
    /// Also observe driver receive with an XDP program of ours. Off by default because
    /// attaching XDP changes the interface: a veth turns off GSO towards it (the sender
    /// segments every packet in software, for a large cost), and some NIC drivers reset their
    /// rings, dropping packets on a live link.
    #[arg(long)]
    pub xdp: bool,
    /// How tc programs are attached: `tcx` links (Linux 6.6+), `cls-bpf` filters on a clsact
    /// qdisc (any kernel; they also bracket other tools' cls_bpf filters, which run after
    /// every tcx program), or `auto`: tcx where the kernel has it, cls-bpf otherwise.
    #[arg(long, value_enum, default_value_t = TcMode::Auto)]
    pub tc: TcMode,
    /// For a report built when the trace stops (without --live, or with -w or -c): keep at
    /// most this many events in memory (about 1 KiB each, analysis included); later ones are
    /// counted, not kept, and the report says so.
    #[arg(long, default_value_t = 500_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events: u64,
    /// Attach every program as a trace does, but have each return at once, reading and
    /// reporting nothing: what the attachments alone cost the traffic (the floor under the
    /// programs' own cost, measured by `cargo xtask bench`). Not for tracing.
    #[arg(long, hide = true)]
    pub attach_only: bool,
    /// With --attach-only: leave a family of points unattached (repeatable), so that the
    /// benchmark can measure what each family adds to the floor. Not for tracing: a journey
    /// without them would be misread.
    #[arg(long, value_enum, hide = true, requires = "attach_only")]
    pub skip_points: Vec<PointFamily>,
    /// Which netfilter hooks get the tracer's links: `needed`, LOCAL_IN and FORWARD (which
    /// tell a delivered or forwarded packet) everywhere and the others where something is
    /// registered (a rule's chain, conntrack, another program), looked for at the start and
    /// every tenth of a second after (a hook with nothing registered cannot drop or change a
    /// packet, and a link there makes the kernel run netfilter for every packet); or `all`,
    /// the whole path through netfilter, as labs show it.
    #[arg(long, value_enum, default_value_t = NetfilterHooks::Needed)]
    pub netfilter_hooks: NetfilterHooks,
    /// Size of the kernel-to-user ring buffer in KiB (a power of two).
    #[arg(long, default_value_t = 4096)]
    pub ring_kib: u32,
    /// A tcpdump filter expression (pcap-filter(7)), e.g. `tcp port 80 and host 10.0.0.1`.
    pub filter: Vec<String>,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.trim_end_matches('s')
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("'{s}' is not a duration in seconds"))
}

pub fn run(args: TraceArgs) -> Result<()> {
    let filter = filter::compile(&args.filter)?;
    if let Some(f) = filter.as_ref().filter(|f| f.l3.is_none()) {
        eprintln!(
            "tracer: note: '{}' needs link-layer headers: only XDP and tc start a packet's trace",
            f.expression
        );
    }
    if !args.ring_kib.is_power_of_two() {
        return Err(Usage(format!(
            "--ring-kib must be a power of two, not {}",
            args.ring_kib
        ))
        .into());
    }
    let recorder = match &args.record {
        Some(path) => Some(recording::Recorder::new(recording::create(path)?, path)),
        None => None,
    };
    let packet_file = args.write.as_deref().map(recording::create).transpose()?;
    let snap = snap(args.snaplen);
    let count = args.count.map(|n| n as usize);
    let options = TraceOptions {
        netns: args.netns.clone(),
        interfaces: args.interfaces.clone(),
        filter,
        ring_bytes: args.ring_kib * 1024,
        count,
        snaplen: match (&packet_file, snap) {
            (None, _) => 0,
            (Some(_), Snap::Headers) => SNAP_HEADERS as u16,
            (Some(_), Snap::Bytes(n)) => n as u16,
        },
        xdp: args.xdp,
        attach_only: args.attach_only,
        skip_points: args.skip_points.clone(),
        netfilter_hooks: args.netfilter_hooks,
        tc: args.tc,
        max_events: args.max_events as usize,
        live: (args.live
            || (matches!(args.format, Format::Text) && std::io::stdout().is_terminal()))
        .then_some(LiveOptions {
            selection: selection(args.problems),
            paths: args.verbose,
            format: args.format,
            summary_every_ns: args.summary_every.map(|d| d.as_nanos() as u64),
        }),
    };
    let comment = match &options.filter {
        Some(filter) => format!("tracer trace '{}'", filter.expression),
        None => "tracer trace (no filter)".to_string(),
    };
    // With the live view, packets go to the file as their journeys close; without it, the
    // file is written from the report built at the end.
    let (streamed_file, packet_file) = match (packet_file, options.live.is_some()) {
        (Some(file), true) => (Some(PacketFile::create(file, snap, &comment)?), None),
        (file, _) => (None, file),
    };
    let outputs = session::Outputs {
        recorder,
        packet_file: streamed_file,
    };
    let traced = session::trace(&options, outputs, || {
        let stop = stop_signal(args.duration)?;
        if let Some(path) = &args.ready_file {
            fs::write(path, b"ready\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(stop)
    })?;
    let session::Traced {
        recording,
        stats,
        live,
    } = traced;
    let said_written = |written: usize| {
        if let Some(path) = &args.write {
            eprintln!("tracer: {written} packets written to {}", path.display());
        }
    };
    if let Some(live) = live {
        // Every packet was reported as it went; the flows still open and the summary now.
        if let Some(written) = live.report(&recording.context, &stats)? {
            said_written(written);
        }
        crate::report::stdout::warnings(&stats);
        return Ok(());
    }
    let analysis = Analysis::new(recording, count);
    if let Some(file) = packet_file {
        said_written(packet_file::write(file, &analysis, snap, &comment)?);
    }
    let selection = selection(args.problems);
    crate::report::stdout::report_selected(args.format, &analysis, &stats, selection, false)
}

fn selection(problems: bool) -> Selection {
    if problems {
        Selection::Problems
    } else {
        Selection::All
    }
}

/// What `--snaplen` asks for, within what a kernel record carries.
fn snap(snaplen: Option<u32>) -> Snap {
    match snaplen {
        None => Snap::Headers,
        Some(n) if n == 0 || n > SNAP_MAX as u32 => {
            if n > SNAP_MAX as u32 {
                eprintln!("tracer: note: --snaplen {n} is capped at {SNAP_MAX} bytes per packet");
            }
            Snap::Bytes(SNAP_MAX as u32)
        }
        Some(n) => Snap::Bytes(n),
    }
}

/// A future that completes after `duration`, or on Ctrl-C / SIGTERM. The signal listeners
/// are registered here, before the caller announces readiness: a signal sent the moment the
/// ready file appears must not be lost.
pub fn stop_signal(duration: Option<Duration>) -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        let timeout = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = timeout => {}
        }
    })
}
