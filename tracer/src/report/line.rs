//! One line per packet, as tcpdump prints one, written while the trace runs as each packet's
//! journey closes: time, protocol, addresses and ports, flags, length, and what became of it
//! in a few words. A drop says where and why, and where a capture would have seen it.

use crate::{
    analysis::{capture::Capture, fate::FateKind, journey::Journey},
    model::protocol::Proto,
    report::{
        explanation::{short_fate, words::packet_words},
        paint::Paint,
    },
};

/// Turns the events' clock (CLOCK_MONOTONIC) into the time of day, as tcpdump prints it.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// Wall-clock nanoseconds since the epoch minus monotonic ones, read once.
    offset_ns: i128,
}

impl WallClock {
    pub fn now() -> WallClock {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        WallClock {
            offset_ns: wall - i128::from(crate::kernel::clock::monotonic_ns()),
        }
    }

    /// The clock a trace read when it started, as its recording keeps it.
    pub fn from_offset(offset_ns: i64) -> WallClock {
        WallClock {
            offset_ns: i128::from(offset_ns),
        }
    }

    /// Wall-clock nanoseconds minus monotonic ones (fits an `i64` until the year 2262).
    pub fn offset_ns(self) -> i64 {
        self.offset_ns as i64
    }

    /// `HH:MM:SS.uuuuuu` of an event's time, in UTC (the machine's logs' time zone may be
    /// anything; UTC reads the same everywhere).
    pub fn time_of_day(self, ts_ns: u64) -> String {
        let ns = (i128::from(ts_ns) + self.offset_ns).max(0) as u128;
        let day_ns = ns % (86_400 * 1_000_000_000);
        let secs = day_ns / 1_000_000_000;
        format!(
            "{:02}:{:02}:{:02}.{:06}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            day_ns % 1_000_000_000 / 1000
        )
    }
}

/// `12:00:01.000123 TCP SYN 10.0.0.1:40000 > 10.0.0.2:8080 len 60: DROPPED ...`; a netfilter
/// drop names its rule where the rules' counters tell it (`rule`, from
/// [`crate::report::explanation::rule_words_short`]).
pub fn packet_line(
    journey: &Journey,
    captures: &[Capture],
    rule: Option<&str>,
    clock: WallClock,
    paint: Paint,
) -> String {
    let s = journey.headers();
    let time = clock.time_of_day(journey.sightings[0].ts_ns);
    let head = match s.proto {
        // Not IP: no addresses the tracer reads; the frame's kind and its length.
        Proto::Ethertype(ethertype) => format!("{time} {} len {}", frame_words(ethertype), s.len),
        _ => format!("{time} {} len {}", packet_words(s), s.ip_len),
    };
    let outcome = short_fate(journey);
    let outcome = match (&journey.copy, journey.fate.kind) {
        (Some(copy), _) => format!("a copy of an earlier packet ({}): {outcome}", copy.made),
        (None, FateKind::Dropped) => paint.fate(
            "dropped",
            &match rule {
                Some(rule) => format!("DROPPED: {outcome}, {rule}; {}", tap_words(captures)),
                None => format!("DROPPED: {outcome}; {}", tap_words(captures)),
            },
        ),
        (None, kind) => paint.fate(kind.name(), &outcome),
    };
    let incomplete = if journey.incomplete {
        " (events were lost while it was alive: it may have been seen at more points)"
    } else {
        ""
    };
    format!("{head}: {outcome}{incomplete}")
}

/// `ARP frame`, `ethertype 0x88cc frame`.
fn frame_words(ethertype: u16) -> String {
    match ethertype {
        0x0806 => "ARP frame".to_string(),
        0x8035 => "RARP frame".to_string(),
        other => format!("ethertype 0x{other:04x} frame"),
    }
}

/// Where a tcpdump would and would not have captured it: `tcpdump sees it leaving a/va and
/// arriving at b/vb`, `... but not arriving at c/vc`.
fn tap_words(captures: &[Capture]) -> String {
    let places = |seen: bool| -> Vec<String> {
        captures
            .iter()
            .filter(|c| c.seen == seen)
            .map(|c| match c.dir {
                "tx" => format!("leaving {}", c.place()),
                _ => format!("arriving at {}", c.place()),
            })
            .collect()
    };
    let (seen, unseen) = (places(true), places(false));
    match (seen.is_empty(), unseen.is_empty()) {
        (true, true) => "no traced interface had it".to_string(),
        (true, false) => format!("tcpdump does not see it {}", unseen.join(" or ")),
        (false, true) => format!("tcpdump sees it {}", seen.join(" and ")),
        (false, false) => format!(
            "tcpdump sees it {}, but not {}",
            seen.join(" and "),
            unseen.join(" or ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{analysis::capture::captures, analysis::journey, model::recording};

    fn journeys(fixture: &str) -> Vec<Journey> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fixture);
        let recording = recording::read(&path).expect("fixture");
        journey::build(recording.sightings, &recording.context.end)
    }

    /// A clock whose offset puts monotonic 0 at midnight.
    const MIDNIGHT: WallClock = WallClock { offset_ns: 0 };

    #[test]
    fn a_syn_dropped_at_local_in_is_one_line_with_where_why_and_what_tcpdump_saw() {
        let all = journeys("local_in_syn_drop.jsonl");
        let syn = &all[0];
        let line = packet_line(syn, &captures(syn, &[]), None, MIDNIGHT, Paint::Plain);
        assert!(
            line.contains("TCP SYN 10.") && line.contains(" len 60: DROPPED: "),
            "{line}"
        );
        assert!(line.contains("NETFILTER_DROP"), "{line}");
        assert!(
            line.ends_with("; tcpdump sees it leaving fx-a/va and arriving at fx-b/vb"),
            "{line}"
        );
    }

    #[test]
    fn a_delivered_packet_is_one_plain_line_and_no_problem() {
        let all = journeys("no_socket_reset.jsonl");
        let delivered: Vec<&Journey> = all
            .iter()
            .filter(|j| j.fate.kind == FateKind::Delivered)
            .collect();
        assert!(!delivered.is_empty());
        for j in delivered {
            let line = packet_line(j, &captures(j, &[]), None, MIDNIGHT, Paint::Plain);
            assert!(
                !line.contains('\n') && line.contains(": delivered"),
                "{line}"
            );
        }
    }

    #[test]
    fn the_time_is_the_time_of_day_to_the_microsecond() {
        let at = (3600 + 2 * 60 + 3) * 1_000_000_000 + 4_005_000;
        assert_eq!(MIDNIGHT.time_of_day(at), "01:02:03.004005");
        assert_eq!(
            MIDNIGHT.time_of_day(86_400 * 1_000_000_000),
            "00:00:00.000000"
        );
    }
}
