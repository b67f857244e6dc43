//! Hostile packets: frames a peer can send that no stack of ours would build (truncated
//! headers, IPv4 options, IPv6 extension headers, VLAN stacks, fragments, zero-length parts,
//! lengths that lie, jumbo frames), sent as raw bytes from `a` into `vb`. The tracer must
//! survive them (exit 0, nothing undecodable, a valid JSON contract), see each one at every
//! point it crossed, and report the fields its headers really hold: ports behind options and
//! extension headers, the outer VLAN id, no ports where none can be known, never garbage.

#[path = "hostile/cases.rs"]
mod cases;

use std::time::Duration;

use cases::{fields, Case};
use serde_json::{json, Value};
use tests::{
    frames::{self, Macs},
    path, require_privileges, schema, Pair, Report, Tcpdump, Tracer,
};

/// (namespace, interface, hook, position).
type Point<'a> = (&'a str, &'static str, &'static str, Option<&'static str>);

/// Where a frame from `va` to `vb` is seen.
fn points<'a>(a: &'a str, b: &'a str) -> [Point<'a>; 5] {
    [
        (a, "va", "tc_egress", Some("first")),
        (a, "va", "dev_xmit", Some("first")),
        (b, "vb", "xdp", None),
        (b, "vb", "netif_receive", None),
        (b, "vb", "tc_ingress", Some("first")),
    ]
}

/// The points `case` must be seen at.
fn points_of<'a>(case: &Case, a: &'a str, b: &'a str) -> Vec<Point<'a>> {
    points(a, b)
        .into_iter()
        .filter(|p| case.reaches_tap || p.2 != "tc_ingress")
        .collect()
}

/// The recorded events of `case` at one point: those whose fields are all as expected.
fn sightings<'a>(
    events: &'a [Value],
    case: &Case,
    (ns, ifname, hook, position): Point,
) -> Vec<&'a Value> {
    let expected = case.expected(hook);
    events
        .iter()
        .filter(|e| {
            e["netns_name"] == ns
                && e["ifname"] == ifname
                && e["hook"] == hook
                && e["position"].as_str() == position
                && fields(e) == expected
        })
        .collect()
}

/// What a point did report near `case` (same IP id, or same length for a frame without one),
/// to show in a failure.
fn near(events: &[Value], case: &Case, ns: &str, hook: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["netns_name"] == ns && e["hook"] == hook)
        .filter(|e| match case.want.ip_id {
            0 => e["len"] == case.len_at(hook),
            id => e["ip_id"] == id,
        })
        .map(fields)
        .collect()
}

/// Each frame must be seen once, with its fields, at each of its points and nowhere else on
/// the path, and make one journey: what is wrong, in words.
fn problems(report: &Report, cases: &[Case], a: &str, b: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for case in cases {
        for point in points(a, b) {
            let seen = sightings(&report.events, case, point);
            let expected = points_of(case, a, b).contains(&point) as usize;
            if seen.len() != expected {
                let (ns, ifname, hook, position) = point;
                problems.push(format!(
                    "{}: {} sightings (not {expected}) at {hook} {} on {ifname} with {}; \
                     it reported {:?}",
                    case.name,
                    seen.len(),
                    position.unwrap_or(""),
                    case.expected(hook),
                    near(&report.events, case, ns, hook)
                ));
            }
        }
        problems.extend(journey_problem(report, case, a, b));
    }
    problems
}

/// The tracer did not choke: it exited 0 (checked by `finish`), lost and misread nothing,
/// and every record keeps the JSON contract.
fn assert_survived(report: &Report) {
    schema::check_json(&report.records);
    let stats = report.stats();
    assert_eq!(stats["undecodable"], 0, "undecodable records: {stats}");
    assert_eq!(
        stats["lost_total"], 0,
        "events lost, the checks below would lie: {stats}"
    );
    assert!(
        !report.stderr.contains("panick"),
        "the tracer panicked: {}",
        report.stderr
    );
}

/// Each frame can be told from the others at every point by the fields the test expects.
fn assert_distinct(cases: &[Case]) {
    for (i, case) in cases.iter().enumerate() {
        for other in &cases[i + 1..] {
            for (_, _, hook, _) in points("a", "b") {
                assert_ne!(
                    case.expected(hook),
                    other.expected(hook),
                    "{} and {} cannot be told apart at {hook}",
                    case.name,
                    other.name
                );
            }
        }
    }
}

fn pair_with_macs() -> (Pair, Macs) {
    let pair = Pair::create();
    let macs = Macs::between(&pair.a, "va", &pair.b, "vb");
    (pair, macs)
}

fn named_frames(cases: &[Case]) -> Vec<(String, Vec<u8>)> {
    cases
        .iter()
        .map(|c| (c.name.to_string(), c.frame.clone()))
        .collect()
}

/// The names of the cases whose frame is among `captured`, byte for byte.
fn captured_names(cases: &[Case], captured: &[Vec<u8>]) -> Vec<&'static str> {
    cases
        .iter()
        .filter(|c| captured.contains(&c.frame))
        .map(|c| c.name)
        .collect()
}

/// Sends `cases` from va while the tracer (with `filter`, if any) and a tcpdump on vb (with the
/// same filter) watch; the names of the frames tcpdump captured, and the tracer's report,
/// checked to have survived.
fn trace_and_capture(pair: &Pair, cases: &[Case], filter: &str) -> (Vec<&'static str>, Report) {
    let (a, b) = (pair.a.name.as_str(), pair.b.name.as_str());
    let mut args = vec!["--xdp", "-n", a, "-n", b];
    if !filter.is_empty() {
        args.push(filter);
    }
    let tracer = Tracer::start(&args);
    let tcpdump = Tcpdump::start(&pair.b, "vb", filter);
    frames::send(&pair.a, "va", named_frames(cases));
    std::thread::sleep(Duration::from_millis(500));
    let captured = captured_names(cases, &tcpdump.stop_frames());
    let report = tracer.finish();
    assert_survived(&report);
    (captured, report)
}

#[test]
fn hostile_frames_are_seen_everywhere_with_the_fields_they_hold() {
    require_privileges();
    let (pair, macs) = pair_with_macs();
    let (a, b) = (pair.a.name.as_str(), pair.b.name.as_str());
    let cases = cases::hostile(&macs);
    let names: Vec<&str> = cases
        .iter()
        .filter(|c| c.reaches_tap)
        .map(|c| c.name)
        .collect();
    assert_distinct(&cases);
    let (captured, report) = trace_and_capture(&pair, &cases, "");
    assert_eq!(
        captured, names,
        "tcpdump on vb, the witness, did not capture the frames that reach it as they were sent"
    );
    let problems = problems(&report, &cases, a, b);
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!(
        "{} hostile frames sent; tcpdump on vb captured the {} that reach it; each seen with \
         its fields at every point it crossed",
        cases.len(),
        names.len(),
    );
}

/// The tcpdump expression of the filtered run: it selects some hostile frames and not others
/// (VLAN-tagged ones included, as tcpdump does on Linux, where the kernel takes the outer tag
/// off before the filter runs).
const FILTER: &str = "udp";

#[test]
fn a_filter_selects_the_hostile_frames_tcpdump_selects() {
    require_privileges();
    let (pair, macs) = pair_with_macs();
    let (a, b) = (pair.a.name.as_str(), pair.b.name.as_str());
    let cases = cases::hostile(&macs);
    let (captured, report) = trace_and_capture(&pair, &cases, FILTER);
    let reaching = cases.iter().filter(|c| c.reaches_tap).count();
    assert!(
        !captured.is_empty() && captured.len() < reaching,
        "'{FILTER}' must select some frames and not others to prove anything: {captured:?}"
    );
    let mut problems = Vec::new();
    for case in cases.iter().filter(|c| c.reaches_tap) {
        let wanted = captured.contains(&case.name);
        for point in points(a, b).into_iter().filter(|p| p.1 == "vb") {
            let selected = !sightings(&report.events, case, point).is_empty();
            if selected != wanted {
                problems.push(format!(
                    "{}: tcpdump '{FILTER}' on vb captured it: {wanted}; \
                     the tracer's {} selected it: {selected}",
                    case.name, point.2
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!(
        "'{FILTER}': tcpdump and the tracer at xdp, netif_receive and tc_ingress selected the \
         same {} of {reaching} hostile frames",
        captured.len()
    );
}

/// What is wrong with the journey of `case`: one packet record, with its headers, crossing
/// every point of [`points_of`]; or, for a frame the kernel frees before the tap, its drop.
fn journey_problem(report: &Report, case: &Case, a: &str, b: &str) -> Option<String> {
    let w = &case.want;
    if !case.reaches_tap {
        let freed = report.events.iter().any(|e| {
            e["hook"] == "kfree_skb"
                && e["netns_name"] == b
                && e["ifname"] == "vb"
                && e["len"] == case.len_at("netif_receive")
        });
        return (!freed).then(|| format!("{}: its drop in {b} was not reported", case.name));
    }
    if w.proto == "unknown" {
        // Without an IP header there is nothing to make a journey of: the tracer keeps such
        // sightings in the recorded stream only (checked above).
        return None;
    }
    let journeys: Vec<&Value> = report
        .packets()
        .filter(|p| {
            json!([p["src"], p["dst"], p["proto"], p["sport"], p["dport"], p["ip_id"], p["len"]])
                == json!([w.src, w.dst, w.proto, w.sport, w.dport, w.ip_id, w.ip_len])
        })
        .collect();
    let [journey] = journeys[..] else {
        return Some(format!(
            "{}: {} packet records, not 1",
            case.name,
            journeys.len()
        ));
    };
    let crossed: Vec<Point> = journey["path"]
        .as_array()
        .expect("a path")
        .iter()
        .filter_map(|p| {
            points(a, b)
                .into_iter()
                .find(|(ns, ifname, hook, position)| {
                    p["netns_name"] == *ns
                        && p["ifname"] == *ifname
                        && p["hook"] == *hook
                        && p["position"].as_str() == *position
                })
        })
        .collect();
    (crossed != points_of(case, a, b)).then(|| {
        format!(
            "{}: its journey crossed {crossed:?}, not every point: {:?}",
            case.name,
            path(journey)
        )
    })
}

/// Jumbo frames (MTU 9000 on both veths): the XDP program must take multi-buffer frames (a
/// veth refuses a program that cannot while its peer's MTU exceeds a page), and every point
/// must give their whole length, not the first buffer's.
#[test]
fn jumbo_frames_are_seen_whole() {
    require_privileges();
    let (pair, macs) = pair_with_macs();
    let (a, b) = (pair.a.name.as_str(), pair.b.name.as_str());
    pair.a.sh("ip link set va mtu 9000");
    pair.b.sh("ip link set vb mtu 9000");
    let cases = cases::jumbo(&macs);
    assert_distinct(&cases);
    assert_eq!(cases[0].frame.len(), 9014, "as big as the MTU allows");
    let (captured, report) = trace_and_capture(&pair, &cases, "");
    assert_eq!(
        captured,
        ["jumbo-ipv4-udp", "jumbo-ipv6-hop-by-hop-udp"],
        "tcpdump on vb, the witness, did not capture both jumbo frames whole"
    );
    let problems = problems(&report, &cases, a, b);
    // An XDP program the kernel refused is said on stderr.
    assert!(problems.is_empty(), "{problems:#?}\n{}", report.stderr);
    eprintln!(
        "jumbo frames of {} and {} bytes sent, captured by tcpdump, seen whole at every point",
        cases[0].frame.len(),
        cases[1].frame.len()
    );
}
