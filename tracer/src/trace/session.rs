//! A tracing session: kernel programs loaded and attached, events read until told to stop.

use std::{future::Future, sync::Arc, time::Instant};

use anyhow::{Context, Result};
use aya::{
    maps::{HashMap as BpfHashMap, Map},
    Ebpf,
};
use tokio::io::unix::AsyncFd;
use tracer_common::{
    config::{iface_key, TraceConfig},
    event::wake_every,
    names,
};

use event_ring::EventRing;
use ring::{drain, live_lines, Kept, Readers, LIVE_TICK};
use rules_watch::RulesWatch;

pub use ring::decode_record;

use crate::{
    kernel::counters,
    kernel::filter::Filter,
    kernel::kallsyms::Kallsyms,
    kernel::kernel_btf::KernelBtf,
    kernel::live_capture::{self, LiveCapture},
    kernel::loader::{self, Attachment, InterfacePrograms, TcMode},
    kernel::netfilter::{Netfilter, NetfilterHooks},
    kernel::netns::{self, Netns, NetnsRef},
    kernel::rules,
    model::recording::{Recorder, Recording},
    model::sighting::{Name, Names},
    report::line::WallClock,
    report::stats::Stats,
    report::status::Status,
    trace::live::{LiveEnd, LiveView},
    trace::usage::Usage,
};

pub struct TraceOptions {
    /// Namespace specs (`NAME`, path, `pid:N`, `.`, `all`); empty means our own.
    pub netns: Vec<String>,
    /// Interfaces to attach XDP and tc to; empty means all but loopback.
    pub interfaces: Vec<String>,
    /// The compiled tcpdump filter; `None` traces every packet.
    pub filter: Option<Filter>,
    pub ring_bytes: u32,
    /// Stop once this many packets were seen (`-c`).
    pub count: Option<usize>,
    /// Packet bytes the kernel copies into each event (`-w`); 0 for none.
    pub snaplen: u16,
    /// Attach our own XDP program (`--xdp`): the driver receive point, at a cost (see
    /// `TraceArgs::xdp`).
    pub xdp: bool,
    /// How tc programs are attached (`--tc`).
    pub tc: TcMode,
    /// The most events kept in memory (`--max-events`): the bound on the trace's tables.
    pub max_events: usize,
    /// A line per packet on stdout as its journey closes (`--live`), of the packets the
    /// selection keeps (`--problems`).
    pub live: Option<crate::trace::live::LiveOptions>,
    /// Every program attached and returning at once (`--attach-only`): what the attachments
    /// alone cost, for the benchmark.
    pub attach_only: bool,
    /// Families of points left unattached (`--skip-points`, only with `attach_only`): what
    /// each adds to the floor, for the benchmark.
    pub skip_points: Vec<PointFamily>,
    /// Which netfilter hooks get links (`--netfilter-hooks`).
    pub netfilter_hooks: NetfilterHooks,
}

/// A family of observation points, as `--skip-points` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PointFamily {
    /// The netfilter links (or trampolines) of every traced namespace.
    Netfilter,
    /// tc's programs (and XDP's, with `--xdp`) on every traced interface.
    Tc,
    /// The global tracepoints.
    Tracepoints,
}

/// Where a trace writes as it goes, besides stdout.
#[derive(Default)]
pub struct Outputs {
    /// The raw events (`--record`).
    pub recorder: Option<Recorder>,
    /// The packets as their journeys close (`-w` with the live view).
    pub packet_file: Option<crate::report::packet_file::PacketFile>,
}

pub struct Session {
    ebpf: Ebpf,
    /// Holds the netfilter links: dropping it detaches them.
    netfilter: Netfilter,
    /// Holds the tc filters of kernels without tcx: dropping it removes them.
    interface_programs: InterfacePrograms,
    ring: AsyncFd<EventRing>,
    names: Names,
    pub attachments: Vec<Attachment>,
    /// Whether our XDP program was asked for (`--xdp`).
    pub xdp: bool,
    started: Instant,
    /// The time of day of the events' clock, read when tracing started: the live lines and a
    /// replay of the recording tell time by it.
    clock: WallClock,
    /// Not held open: a namespace deleted during the trace must be able to go.
    namespaces: Vec<NetnsRef>,
    /// Each namespace's kernel counters when tracing started (see [`counters`]).
    counters_before: Vec<Option<counters::Counters>>,
    /// The netfilter rules, read when tracing starts, when a drop needs them and at the end.
    rules: RulesWatch,
    live: Vec<LiveCapture>,
    count: Option<usize>,
    /// The bound on what a trace holds (`--max-events`).
    max_events: usize,
    /// A line per packet as its journey closes (`--live`).
    live_view: Option<LiveView>,
    /// Whether the events are kept for a report built at the end (no live view, or `-c`).
    keeps_events: bool,
    /// When the trace ended, once it is stopping (`u64::MAX` until then).
    ends_at_ns: u64,
    /// The raw events written as they are read (`--record`).
    recorder: Option<Recorder>,
}

/// What a trace gives: the events it kept and its context, its statistics, and the end of
/// the live view's report when there was one.
pub struct Traced {
    pub recording: Recording,
    pub stats: Stats,
    pub live: Option<LiveEnd>,
}

/// How long events keep coming in after `-c` was reached, so that the counted packets'
/// journeys are complete (a packet crosses the whole stack in microseconds).
const COUNT_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

impl Session {
    /// Loads and attaches everything. Must run inside a tokio runtime.
    pub fn start(options: &TraceOptions) -> Result<Session> {
        let namespaces = Netns::open_specs(&options.netns)?;
        let btf = KernelBtf::load()?;
        let offsets = btf.offsets()?;
        let filter = options.filter.as_ref();
        let config = TraceConfig {
            netns_filter: 1,
            iface_filter: u8::from(!options.interfaces.is_empty()),
            filter_l2: u8::from(filter.is_some_and(|f| f.l2.is_some())),
            filter_l3: u8::from(filter.is_some_and(|f| f.l3.is_some())),
            snaplen: options.snaplen,
            inert: u8::from(options.attach_only),
            wake_every: wake_every(
                options.ring_bytes,
                aya::util::nr_cpus().map_or(1, |n| n as u32),
            ),
            ..TraceConfig::default()
        };
        let mut ebpf = loader::load(&offsets, &config, options.ring_bytes)?;
        if let Some(filter) = filter {
            loader::load_filter(&mut ebpf, filter)?;
        }

        let mut traced: BpfHashMap<_, u32, u8> = BpfHashMap::try_from(
            ebpf.map_mut(names::TRACED_NETNS)
                .context("map TRACED_NETNS missing")?,
        )?;
        for ns in &namespaces {
            traced.insert(ns.inode, 1, 0)?;
        }

        let named = netns::named_paths();
        // Where a veth's peer may be: the traced namespaces, and those the user has a name for.
        let known: Vec<Netns> = named
            .iter()
            .filter(|(inode, _)| !namespaces.iter().any(|ns| ns.inode == **inode))
            .filter_map(|(inode, (name, path))| Netns::at(path, *inode, name))
            .collect();
        let mut names = Names {
            netns: named
                .into_iter()
                .map(|(inode, (name, _))| (inode, Name::from(name)))
                .collect(),
            drop_reasons: btf.drop_reasons(),
            reset_reasons: btf.reset_reasons(),
            kallsyms: Kallsyms::load(),
            ..Names::default()
        };
        let skips = |family| options.skip_points.contains(&family);
        let mut attachments = if skips(PointFamily::Tracepoints) {
            Vec::new()
        } else {
            loader::attach_tracepoints(&mut ebpf, &btf)
        };
        let mut interface_programs = InterfacePrograms::load(&mut ebpf, options.xdp, options.tc);
        let mut netfilter = Netfilter::load(&mut ebpf, options.netfilter_hooks);
        let mut traced_ifaces: BpfHashMap<_, u64, u8> = BpfHashMap::try_from(
            ebpf.take_map(names::TRACED_IFACES)
                .context("map TRACED_IFACES missing")?,
        )?;
        let mut matched_interfaces = Vec::new();
        for ns in &namespaces {
            if !skips(PointFamily::Netfilter) {
                attachments.extend(netfilter.attach(ns));
            }
            crate::trace::fault::panic_point("attach");
            let interfaces = ns.run(netns::interfaces)?;
            let ports = ns.run(|| crate::analysis::bridge::masters(&interfaces))?;
            for (port, bridge) in ports {
                names.bridge_of.insert((ns.inode, port), bridge);
            }
            let traced_and_known: Vec<&Netns> = namespaces.iter().chain(&known).collect();
            for (ifindex, peer) in crate::kernel::veth::peers(ns, &interfaces, &traced_and_known) {
                names.veth_peers.insert((ns.inode, ifindex), Arc::new(peer));
            }
            for (ifindex, ifname) in interfaces {
                names
                    .interfaces
                    .insert((ns.inode, ifindex), Name::from(ifname.as_str()));
                let wanted = if options.interfaces.is_empty() {
                    ifname != "lo"
                } else {
                    options.interfaces.contains(&ifname)
                };
                if wanted {
                    traced_ifaces.insert(iface_key(ns.inode, ifindex), 1, 0)?;
                    matched_interfaces.push(ifname.clone());
                    if skips(PointFamily::Tc) {
                        continue;
                    }
                    let attached = interface_programs.attach(&mut ebpf, ns, &ifname);
                    for program in attached.iter().filter_map(|a| a.foreign_program.clone()) {
                        names.foreign_xdp.insert((ns.inode, ifindex), program);
                    }
                    attachments.extend(attached);
                }
            }
        }
        if let Some(missing) = options
            .interfaces
            .iter()
            .find(|i| !matched_interfaces.contains(i))
        {
            return Err(Usage(format!(
                "unknown interface '{missing}' (not in any traced namespace)"
            ))
            .into());
        }

        let Some(Map::RingBuf(ring)) = ebpf.take_map(names::EVENTS) else {
            anyhow::bail!("map EVENTS missing or not a ring buffer");
        };
        let ring = EventRing::new(ring).context("cannot map the event ring buffer")?;
        // SAFETY: the ring owns its map fd, which stays open and unchanged until the AsyncFd
        // (which owns the ring) is dropped.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|e| anyhow::anyhow!("cannot poll the event ring buffer: {e}"))?;
        let counters_before = namespaces
            .iter()
            .map(|ns| ns.run(counters::read).ok().and_then(Result::ok))
            .collect();
        let rules_before: Vec<Option<rules::Ruleset>> = namespaces
            .iter()
            .map(|ns| ns.run(rules::read).ok())
            .collect();
        let live = live_capture::scan();
        let clock = WallClock::now();
        let namespaces: Vec<NetnsRef> = namespaces.into_iter().map(Netns::remember).collect();
        let rules = RulesWatch::new(namespaces.iter().cloned().zip(rules_before).collect());
        Ok(Session {
            ebpf,
            netfilter,
            interface_programs,
            ring,
            names,
            attachments,
            xdp: options.xdp,
            started: Instant::now(),
            clock,
            namespaces,
            counters_before,
            rules,
            live_view: options
                .live
                .map(|options| LiveView::new(live.clone(), options, clock)),
            live,
            count: options.count,
            max_events: options.max_events,
            keeps_events: options.live.is_none() || options.count.is_some(),
            ends_at_ns: u64::MAX,
            recorder: None,
        })
    }

    /// Reads events until `stop` completes, then drains what is left.
    pub async fn collect(&mut self, stop: impl Future<Output = ()>) -> Result<Traced> {
        let mut sightings = Vec::new();
        let mut stats = Stats::default();
        let mut counted = PacketCount::default();
        let mut status = Status::for_stderr();
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        let mut ticks = 0u64;
        // A quiet moment closes journeys too: a drop is printed soon after it, not at the
        // next event (there may be none).
        let mut live_tick = tokio::time::interval(LIVE_TICK);
        // The kernel wakes the reader only every so many records (see `RING_POLL`).
        let mut ring_poll = tokio::time::interval(RING_POLL);
        ring_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut census = tokio::time::interval(NETFILTER_CENSUS);
        census.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        crate::trace::fault::panic_point("tracing");
        loop {
            let readable = tokio::select! {
                _ = &mut stop => break,
                _ = live_tick.tick(), if self.live_view.is_some() => {
                    if let Some(live) = self.live_view.as_mut() {
                        let now = crate::kernel::clock::monotonic_ns();
                        live_lines(live.advance(Some(now)), status.as_ref());
                    }
                    false
                }
                _ = tick.tick() => {
                    self.let_deleted_namespaces_go();
                    ticks += 1;
                    if ticks.is_multiple_of(TRIM_EVERY_TICKS) {
                        give_back_free_memory();
                    }
                    if let Some(status) = status.as_mut() {
                        if let Some(live) = &self.live_view {
                            status.open_flows(live.open_flows());
                        }
                        status.draw(self.lost_counts()?.0.values().sum());
                    }
                    false
                }
                _ = ring_poll.tick() => true,
                _ = census.tick(), if self.netfilter.watches() => {
                    self.link_new_netfilter_registrations();
                    false
                }
                Some(snapshot) = self.rules.done(), if self.rules.reading() => {
                    if let Some(recorder) = self.recorder.as_mut() {
                        recorder.rules(&snapshot);
                    }
                    if let Some(live) = self.live_view.as_mut() {
                        live.add_rules(snapshot);
                        live_lines(live.advance(None), status.as_ref());
                    }
                    false
                }
                guard = self.ring.readable_mut() => {
                    // Cleared before the ring is read: a wakeup while it is read then makes
                    // it readable again, rather than being cleared with the read.
                    guard?.clear_ready();
                    true
                }
            };
            self.read_rules_if_wanted();
            if !readable {
                continue;
            }
            let seen = sightings.len();
            self.read_ring(&mut stats, &mut sightings, status.as_mut());
            if let Some(live) = self.live_view.as_mut() {
                live_lines(live.advance(None), status.as_ref());
            }
            self.read_rules_if_wanted();
            if self
                .count
                .is_some_and(|n| counted.add(&sightings[seen..]) >= n)
            {
                let _ = tokio::time::timeout(COUNT_GRACE, &mut stop).await;
                break;
            }
        }
        if let Some(status) = &status {
            status.erase();
        }
        self.finish(stats, sightings)
    }

    /// Starts reading the drop rules when the live view holds a netfilter drop read after no
    /// read so far: the read names its rule.
    fn read_rules_if_wanted(&mut self) {
        let wanted = self.live_view.as_ref().and_then(LiveView::rules_wanted);
        if let Some(wanted) = wanted {
            self.rules.start(wanted.netns);
        }
    }

    /// Reads what the ring holds into the statistics, the kept events, the live view, the
    /// status line and the recording.
    fn read_ring(
        &mut self,
        stats: &mut Stats,
        sightings: &mut Vec<crate::model::sighting::Sighting>,
        status: Option<&mut Status>,
    ) {
        let mut readers = Readers {
            names: &self.names,
            stats,
            kept: self.keeps_events.then_some(Kept {
                max: self.max_events,
                sightings,
            }),
            live: self.live_view.as_mut(),
            status,
            record: self.recorder.as_mut(),
            until_ns: self.ends_at_ns,
        };
        drain(self.ring.get_mut(), &mut readers);
    }

    /// Detaches the netfilter hooks of each traced namespace that was deleted (its name gone,
    /// no process left in it): they hold a reference on it, and would keep it, its interfaces
    /// and their veth peers alive until the tracer exits.
    fn let_deleted_namespaces_go(&mut self) {
        let mut in_use = None;
        for ns in &self.namespaces {
            if ns.reopen().is_some() || !self.netfilter.holds(ns.inode) {
                continue;
            }
            let in_use = in_use.get_or_insert_with(netns::inodes_in_use);
            if !in_use.contains(&ns.inode) && self.netfilter.release(ns.inode) {
                eprintln!(
                    "tracer: namespace {} was deleted: its netfilter points are detached so \
                     that it can go",
                    ns.display_name
                );
            }
        }
    }
}

/// How often the ring is read without a wakeup: the kernel programs wake the reader only
/// every `tracer_common::event::WAKE_EVERY` records of a CPU (each wakeup is an interrupt,
/// and costs the packet that triggers it a few microseconds), so a trickle of events waits
/// at most this long.
const RING_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// How often the namespaces with unlinked netfilter hooks are looked at again: a rule added
/// during the trace runs unbracketed (its drops still seen by `kfree_skb`) for at most this
/// long. A census is a thread entering the namespace and one program run.
const NETFILTER_CENSUS: std::time::Duration = std::time::Duration::from_millis(100);

/// Seconds between two [`give_back_free_memory`] while tracing.
const TRIM_EVERY_TICKS: u64 = 10;

/// Returns the heap's free pages to the kernel. glibc keeps what was freed inside its heap
/// (only the top is given back by itself), so a trace that runs for hours, allocating and
/// freeing journeys of every size, would otherwise hold the most it ever used, scattered.
fn give_back_free_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe { libc::malloc_trim(0) };
}

/// Runs a whole session on a fresh runtime: attach, report on stderr what could not be
/// attached, call `once_attached` for the future that says when to stop, collect until then.
pub fn trace<F, Stop>(options: &TraceOptions, outputs: Outputs, once_attached: F) -> Result<Traced>
where
    F: FnOnce() -> Result<Stop>,
    Stop: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut session = Session::start(options)?;
        session.recorder = outputs.recorder;
        if let (Some(view), Some(file)) = (session.live_view.as_mut(), outputs.packet_file) {
            view.write_packets_to(file);
        }
        // Loading parsed the kernel's BTF (tens of MB) and freed it.
        give_back_free_memory();
        crate::trace::attached::report_attachments(&session.attachments, session.xdp);
        session.report_idle_netfilter_hooks();
        let stop = once_attached()?;
        session.collect(stop).await
    })
}

mod context;
mod count;
mod event_ring;
mod netfilter_notes;
mod ring;
mod rules_watch;
mod stop;

use count::PacketCount;

#[cfg(test)]
mod fuzz;
