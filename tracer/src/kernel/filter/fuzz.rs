//! Properties of the FILTER path: any text compiles to a filter or to a sentence, and the
//! kernel programs' interpreter gives libpcap's verdict (libpcap's own `bpf_filter` is the
//! oracle) on generated expressions and on random programs, over generated, truncated,
//! mutated and random packets, viewed the way the tc, XDP and netfilter hooks view them.
//!
//! libpcap is required: without it these properties fail with "NOT RUN", never skip.
//! `PROPTEST_CASES` sets the cases per property; `cargo xtask fuzz` runs them for longer.

#[path = "../../../../tracer-common/tests/fuzzing/generate.rs"]
#[allow(dead_code)] // Shared with the parser properties, which use the rest.
mod generate;
#[path = "../../../../tracer-common/tests/fuzzing/packets.rs"]
#[allow(dead_code)]
mod packets;

mod grammar;
mod programs;
mod views;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use proptest::{
    collection::vec,
    prelude::*,
    sample::{select, Index},
};
use tracer_common::cbpf::{self, Insn};

use super::*;
use crate::fuzzing::check;
use views::{Case, Verdicts};

fn insns(program: &Program) -> &[Insn] {
    &program.insns[..program.len as usize]
}

/// Tallies that show a property exercised something: filters compiled, packets accepted.
#[derive(Default)]
struct Tally {
    compiled: AtomicU64,
    rejected: AtomicU64,
    verdicts: AtomicU64,
    accepted: AtomicU64,
}

impl Tally {
    fn count(&self, v: &Verdicts) {
        self.verdicts.fetch_add(1, Relaxed);
        if v.libpcap {
            self.accepted.fetch_add(1, Relaxed);
        }
    }

    /// Fails if a long enough run compiled too few filters or matched almost no packet: the
    /// generators would then test nothing.
    fn assert_exercised(&self, name: &str) {
        let (compiled, rejected) = (self.compiled.load(Relaxed), self.rejected.load(Relaxed));
        let (verdicts, accepted) = (self.verdicts.load(Relaxed), self.accepted.load(Relaxed));
        eprintln!(
            "{name}: {compiled} compiled, {rejected} refused; {verdicts} verdicts, {accepted} accepted"
        );
        if compiled + rejected >= 100 {
            assert!(
                compiled * 3 >= compiled + rejected,
                "too few filters compile"
            );
        }
        if verdicts >= 1000 {
            assert!(accepted * 50 >= verdicts, "too few packets match");
            assert!(accepted < verdicts, "every packet matches");
        }
    }
}

/// Every view of `case` a hook may build: tc/XDP (L2 program), split anywhere, netfilter and
/// tracepoints (L3 program). Fails with the view, the packet and the program.
fn compare_views(
    what: &str,
    filter: &Filter,
    case: &Case,
    ip_offset: usize,
    tally: &Tally,
) -> Result<(), TestCaseError> {
    let mut verdicts = Vec::new();
    if let Some(l2) = &filter.l2 {
        if let Some(v) = views::like_tc(l2, insns(l2), case) {
            verdicts.push(("tc (L2 program)", v, insns(l2)));
        }
        let v = views::split_anywhere(l2, insns(l2), case);
        verdicts.push(("L2 program, split view", v, insns(l2)));
    }
    if let Some(l3) = &filter.l3 {
        let v = views::like_netfilter(l3, insns(l3), case, ip_offset);
        verdicts.push(("netfilter (L3 program)", v, insns(l3)));
    }
    for (view, v, program) in verdicts {
        tally.count(&v);
        prop_assert_eq!(
            v.ours,
            v.libpcap,
            "{} on the {} view of {:02x?} ({} of {} bytes, len {:?}, split {}): program {:?}",
            what,
            view,
            case.frame,
            case.copied,
            case.frame.len(),
            case.wire_len,
            case.split,
            program
        );
    }
    Ok(())
}

/// Compiles an expression of the grammar, counted in `tally`; `None` when it is too long for
/// the kernel programs or refused by libpcap (`ip6 and host 10.0.0.1`): nothing to run.
fn compile_generated(expression: &str, tally: &Tally) -> Option<Filter> {
    match compile(&[expression.to_string()]) {
        Ok(Some(filter)) => {
            tally.compiled.fetch_add(1, Relaxed);
            Some(filter)
        }
        Ok(None) => panic!("an expression from the grammar is empty: {expression:?}"),
        Err(FilterError::Library(message)) => panic!("NOT RUN: {message}"),
        Err(_) => {
            tally.rejected.fetch_add(1, Relaxed);
            None
        }
    }
}

#[test]
fn the_interpreter_agrees_with_libpcap_on_generated_filters() {
    let name = "the_interpreter_agrees_with_libpcap_on_generated_filters";
    let tally = Tally::default();
    let strategy = (grammar::expression(), vec(views::case(), 1..6));
    check(name, 256, strategy, |(expression, cases)| {
        let Some(filter) = compile_generated(&expression, &tally) else {
            return Ok(());
        };
        for (case, ip_offset) in &cases {
            compare_views(
                &format!("'{expression}'"),
                &filter,
                case,
                *ip_offset,
                &tally,
            )?;
        }
        Ok(())
    });
    tally.assert_exercised(name);
}

#[test]
fn the_interpreter_agrees_with_libpcap_on_random_programs() {
    let name = "the_interpreter_agrees_with_libpcap_on_random_programs";
    let tally = Tally::default();
    let strategy = (programs::program(), vec(views::case(), 1..4));
    check(name, 512, strategy, |(insns, cases)| {
        prop_assert_eq!(cbpf::validate(&insns), Ok(()), "{:?}", insns);
        let program = to_program(&insns);
        let filter = Filter {
            expression: String::new(),
            l2: Some(program),
            l3: Some(program),
        };
        for (case, ip_offset) in &cases {
            compare_views("the program", &filter, case, *ip_offset, &tally)?;
        }
        Ok(())
    });
    // Random programs reject most packets by design: only the verdict count is meaningful.
    assert!(tally.verdicts.load(Relaxed) > 0 || std::env::var_os("PROPTEST_CASES").is_some());
}

#[test]
fn a_verdict_holds_for_every_view_with_the_bytes_its_run_read_and_lengths_it_admits() {
    let name = "a_verdict_holds_for_every_view_with_the_bytes_its_run_read_and_lengths_it_admits";
    let tally = Tally::default();
    let noise = vec(any::<u8>(), 1..200);
    let lengths = (any::<Index>(), any::<u32>());
    let strategy = (
        grammar::expression(),
        vec((views::case(), noise, lengths), 1..6),
    );
    check(name, 256, strategy, |(expression, cases)| {
        let Some(filter) = compile_generated(&expression, &tally) else {
            return Ok(());
        };
        for ((case, _), noise, lengths) in &cases {
            for program in filter.l2.iter().chain(&filter.l3) {
                let v = views::with_unread_bytes_and_lengths_changed(
                    program,
                    insns(program),
                    case,
                    noise,
                    *lengths,
                );
                tally.count(&v);
                prop_assert_eq!(
                    v.ours,
                    v.libpcap,
                    "'{}' on {:02x?} ({} of {} bytes, split {}), unread bytes from {:02x?}, \
                     lengths {:?}",
                    expression,
                    case.frame,
                    case.copied,
                    case.frame.len(),
                    case.split,
                    noise,
                    lengths
                );
            }
        }
        Ok(())
    });
    tally.assert_exercised(name);
}

/// Words people type and words nobody types: expressions from the grammar, whole or with a
/// word dropped or swapped for another; tcpdump's vocabulary and punctuation, numbers and
/// addresses in any order; any Unicode (NUL included).
fn words() -> impl Strategy<Value = Vec<String>> {
    let vocabulary = select(
        &[
            "host",
            "net",
            "port",
            "portrange",
            "src",
            "dst",
            "and",
            "or",
            "not",
            "!",
            "&&",
            "||",
            "(",
            ")",
            "[",
            "]",
            ":",
            "&",
            "|",
            "=",
            "==",
            "!=",
            "<",
            ">",
            "<<",
            ">>",
            "+",
            "-",
            "*",
            "/",
            "%",
            "^",
            "tcp",
            "udp",
            "icmp",
            "icmp6",
            "ip",
            "ip6",
            "arp",
            "ether",
            "vlan",
            "mpls",
            "proto",
            "protochain",
            "gateway",
            "broadcast",
            "multicast",
            "len",
            "greater",
            "less",
            "tcpflags",
            "tcp-syn",
            "icmptype",
            "mask",
            "\\",
            "inbound",
            "ifname",
            "pppoes",
            "geneve",
            "llc",
            "wlan",
            "type",
            "subtype",
            "atalk",
            "decnet",
        ][..],
    )
    .prop_map(str::to_string);
    let number = prop_oneof![
        (0..100_000u32).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| format!("0x{n:x}")),
        "-?[0-9]{1,30}",
    ];
    let address = prop_oneof![
        any::<[u8; 4]>().prop_map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}")),
        "[0-9a-f:]{1,40}",
        "[0-9./]{1,20}",
        "[0-9a-f]{1,2}(:[0-9a-f]{1,2}){5}",
    ];
    let token = prop_oneof![4 => vocabulary, 2 => number, 2 => address, 1 => any::<String>()];
    // Mostly tokens apart, as a shell passes them; sometimes glued (`port80`, `tcp[13]&2`).
    let word = (vec(token, 1..5), prop_oneof![3 => Just(" "), 1 => Just("")])
        .prop_map(|(tokens, glue)| tokens.join(glue));
    let garbage = vec(
        prop_oneof![3 => word, 1 => "\\PC{0,12}", 1 => any::<String>()],
        0..8,
    );
    let typed = || grammar::expression().prop_map(|e| e.split(' ').map(str::to_string).collect());
    let mistyped = (typed(), any::<Index>(), "\\PC{0,6}").prop_map(
        |(mut words, at, other): (Vec<String>, Index, String)| {
            let at = at.index(words.len());
            if other.is_empty() {
                words.remove(at);
            } else {
                words[at] = other;
            }
            words
        },
    );
    prop_oneof![2 => typed(), 2 => mistyped, 3 => garbage]
}

/// Found by the property below: libpcap 1.10 ends this one message with a newline, which
/// made the tracer's one-line error two lines.
#[test]
fn a_libpcap_message_ending_in_a_newline_is_one_line() {
    let error = compile(&["decnet src a0aa0a00aa00a".to_string()]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "bad filter 'decnet src a0aa0a00aa00a': decnet name support not included, \
         'a0aa0a00aa00a' cannot be translated"
    );
}

#[test]
fn any_words_compile_to_a_filter_or_a_sentence() {
    let name = "any_words_compile_to_a_filter_or_a_sentence";
    let tally = Tally::default();
    check(name, 512, words(), |words| {
        let expression = words.join(" ").trim().to_string();
        match compile(&words) {
            Ok(None) => prop_assert!(expression.is_empty()),
            Ok(Some(filter)) => {
                tally.compiled.fetch_add(1, Relaxed);
                prop_assert_eq!(&filter.expression, &expression);
                prop_assert!(filter.l2.is_some() || filter.l3.is_some());
                for program in filter.l2.iter().chain(&filter.l3) {
                    prop_assert_eq!(cbpf::validate(insns(program)), Ok(()));
                }
            }
            Err(FilterError::Library(message)) => panic!("NOT RUN: {message}"),
            Err(error) => {
                tally.rejected.fetch_add(1, Relaxed);
                let sentence = error.to_string();
                prop_assert!(!expression.is_empty());
                prop_assert!(!sentence.trim().is_empty());
                prop_assert!(!sentence.contains('\n'), "{}", sentence);
                if let FilterError::Rejected { expression: e, .. } = &error {
                    prop_assert_eq!(e, &expression);
                }
            }
        }
        Ok(())
    });
    eprintln!(
        "{name}: {} compiled, {} refused",
        tally.compiled.load(Relaxed),
        tally.rejected.load(Relaxed)
    );
}
