//! What a lab is made of: a topology with one fault, the traffic that meets it, where a user
//! would run tcpdump, and the ground truth the tracer is checked against.

use anyhow::Result;

use crate::{
    analysis::fate::FateKind,
    model::sighting::{Proto, Sighting},
};

/// A built lab, ready to be traced.
pub struct Scenario {
    /// Namespaces to trace.
    pub netns: Vec<String>,
    /// The tcpdump filter, for the tracer and for the real tcpdumps.
    pub filter: String,
    /// `(namespace, interface)` where a user would capture.
    pub captures: Vec<(String, String)>,
    /// `(namespace, interface, filter)`: a capture whose real tcpdump needs a filter of its
    /// own, not `filter` (an underlay, where the traced packets travel inside a tunnel's
    /// outer headers). The tracer's verdicts there are checked against that capture.
    pub capture_filters: Vec<(String, String, String)>,
    /// The traffic, run once every program is attached.
    pub traffic: Box<dyn FnOnce() -> Result<()> + Send>,
    /// What happened, in a sentence or two, to read after the outputs.
    pub lesson: String,
    pub fix: String,
    pub expect: Vec<Expect>,
    /// What must live as long as the lab: another tool's program, a listening socket.
    pub held: Vec<Box<dyn std::any::Any>>,
}

impl Scenario {
    /// The filter the real tcpdump on `netns`/`ifname` runs with.
    pub fn capture_filter(&self, netns: &str, ifname: &str) -> &str {
        self.capture_filters
            .iter()
            .find(|(n, i, _)| n == netns && i == ifname)
            .map_or(&self.filter, |(_, _, filter)| filter)
    }
}

/// The ground truth for some key packets: the fate the injected fault gives them.
pub struct Expect {
    /// `the client's SYNs`.
    pub what: &'static str,
    /// Which packets: a test on the headers the tracer reports.
    pub is: Box<dyn Fn(&Sighting) -> bool + Send>,
    pub fate: FateKind,
    /// When set, any fate but this one is right (and `fate`, `point`, `reason` are not
    /// checked): "no packet is dropped".
    pub not: Option<FateKind>,
    /// Where: `nf_local_in (first)`, as in `Fate::point`; `None` when any place will do.
    pub point: Option<&'static str>,
    /// The kernel's drop reason; `None` when it does not matter.
    pub reason: Option<&'static str>,
    /// At least this many such packets (retransmissions add more).
    pub min: usize,
    /// Only the first such packet (a retransmission may meet another fate).
    pub first_only: bool,
}

impl Expect {
    pub fn new(what: &'static str, is: impl Fn(&Sighting) -> bool + Send + 'static) -> Expect {
        Expect {
            what,
            is: Box::new(is),
            fate: FateKind::Delivered,
            not: None,
            point: None,
            reason: None,
            min: 1,
            first_only: false,
        }
    }

    pub fn first_only(mut self) -> Expect {
        self.first_only = true;
        self
    }

    pub fn dropped(mut self, point: &'static str, reason: &'static str) -> Expect {
        self.fate = FateKind::Dropped;
        self.point = Some(point);
        self.reason = Some(reason);
        self
    }

    pub fn fate(mut self, fate: FateKind) -> Expect {
        self.fate = fate;
        self
    }

    /// Right whatever the fate, but `kind`.
    pub fn not(mut self, kind: FateKind) -> Expect {
        self.not = Some(kind);
        self
    }

    pub fn at_least(mut self, min: usize) -> Expect {
        self.min = min;
        self
    }
}

/// TCP packets with exactly these flags, to or from `port`.
pub fn tcp(flags: &'static [&'static str], port: u16) -> impl Fn(&Sighting) -> bool + Send {
    move |s| s.proto == Proto::Tcp && (s.sport == port || s.dport == port) && s.tcp_flags == flags
}

/// TCP packets that carry data (PSH) from `port`.
pub fn tcp_data_from(port: u16) -> impl Fn(&Sighting) -> bool + Send {
    move |s| s.proto == Proto::Tcp && s.sport == port && s.tcp_flags.has("PSH")
}

/// Packets from `src` to `dst` of protocol `proto`.
pub fn between(
    proto: Proto,
    src: &'static str,
    dst: &'static str,
) -> impl Fn(&Sighting) -> bool + Send {
    move |s| {
        s.proto == proto
            && s.src.is_some_and(|a| a.to_string() == src)
            && s.dst.is_some_and(|a| a.to_string() == dst)
    }
}
