use super::*;
use crate::{analysis::fate::FateKind, lab::scenario::tcp, model::recording};

/// A stream recorded from the kernel: SYNs to port 8080 dropped by an INPUT rule (recorded
/// before the netfilter points existed: the last point that saw them is tc ingress).
fn analysis() -> Analysis {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/local_in_syn_drop.jsonl");
    Analysis::new(recording::read(&path).expect("fixture"), None)
}

fn syns() -> Expect {
    Expect::new("the SYNs", tcp(&["SYN"], 8080))
}

#[test]
fn the_right_fate_scores_every_packet_and_a_wrong_one_none() {
    let analysis = analysis();
    let mut score = Score::default();
    fates(
        &analysis,
        &[syns().dropped("tc_ingress", "NETFILTER_DROP")],
        &mut score,
    );
    assert!(score.packets_checked >= 2, "{score:?}");
    assert_eq!(score.fates_correct, score.packets_checked);
    assert!(score.problems.is_empty());

    let mut wrong = Score::default();
    fates(
        &analysis,
        &[syns().dropped("nf_local_out (first)", "NETFILTER_DROP")],
        &mut wrong,
    );
    assert_eq!(wrong.fates_correct, 0);
    assert_eq!(wrong.problems.len(), wrong.packets_checked);
    // What a failing run leaves to read: which packet of the check, the tracepoint events
    // around it, its path.
    let second = &wrong.problems[1];
    assert!(
        second.contains("packet 2 of this check")
            && second.contains("the nearest tracepoint events of the trace: ")
            && second.contains("its path:\n")
            && second.contains("tc_ingress"),
        "{second}"
    );
    let mut delivered = Score::default();
    fates(
        &analysis,
        &[syns().fate(FateKind::Delivered)],
        &mut delivered,
    );
    assert_eq!(delivered.fates_correct, 0);
}

#[test]
fn a_forbidden_fate_fails_every_packet_that_has_it_and_no_other() {
    let analysis = analysis();
    let mut dropped = Score::default();
    fates(&analysis, &[syns().not(FateKind::Dropped)], &mut dropped);
    assert!(dropped.packets_checked >= 2);
    assert_eq!(dropped.fates_correct, 0);
    assert!(dropped.problems[0].contains("expected anything but dropped"));
    let mut delivered = Score::default();
    fates(
        &analysis,
        &[syns().not(FateKind::Delivered)],
        &mut delivered,
    );
    assert_eq!(delivered.fates_correct, delivered.packets_checked);
}

#[test]
fn too_few_packets_is_a_problem() {
    let mut score = Score::default();
    fates(&analysis(), &[syns().at_least(100)], &mut score);
    assert!(score.problems[0].starts_with("expected at least 100 of the SYNs"));
    assert!(!score.passed());
}

#[test]
fn verdicts_agree_with_a_matching_capture_and_count_each_difference() {
    let analysis = analysis();
    let seen = |j: &crate::analysis::journey::Journey| {
        analysis.captures(j.id).iter().find(|c| c.seen).map(|c| {
            (
                c.netns_name.clone().unwrap_or_default(),
                c.ifname.clone().unwrap_or_default(),
            )
        })
    };
    let first = analysis
        .journeys
        .iter()
        .find_map(seen)
        .expect("a packet seen somewhere");
    let place = (&*first.0, &*first.1);
    let captured: Vec<Sighting> = analysis
        .journeys
        .iter()
        .filter(|j| seen(j).as_ref() == Some(&first))
        .map(|j| j.headers().clone())
        .collect();
    let mut score = Score::default();
    verdicts(&analysis, place, &captured, &mut score);
    assert!(score.verdicts_checked >= captured.len());
    assert_eq!(score.verdicts_agreeing, score.verdicts_checked, "{score:?}");

    let mut missing_one = Score::default();
    verdicts(&analysis, place, &captured[1..], &mut missing_one);
    assert_eq!(
        missing_one.verdicts_agreeing + 1,
        missing_one.verdicts_checked,
        "{missing_one:?}"
    );
    assert_eq!(missing_one.problems.len(), 1);
}
