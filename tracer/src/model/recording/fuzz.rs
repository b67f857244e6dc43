//! Properties of reading a recording (`tracer explain FILE`): real recordings (the fixtures
//! the explanation tests use) with lines deleted, duplicated, swapped, cut, overwritten with
//! other JSON or with bytes that are not UTF-8, and fields removed or given values of the
//! wrong type or range. Each gives the analysis and both outputs, or an error sentence that
//! names the file; never a panic.
//!
//! `PROPTEST_CASES` sets the cases per property; `cargo xtask fuzz` runs them for longer.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering::Relaxed},
};

use proptest::{
    collection::vec,
    prelude::*,
    sample::{select, Index},
};
use serde_json::{json, Value};

use super::*;
use crate::fuzzing::check;
use crate::{analysis::Analysis, report::output, report::paint::Paint, report::stats::Stats};

/// The recordings made on the real kernel, small enough to analyse many times a second.
fn fixtures() -> Vec<(String, Vec<String>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out: Vec<(String, Vec<String>)> = std::fs::read_dir(&dir)
        .expect("tests/fixtures")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let small = path.metadata().ok()?.len() < 40_000;
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".jsonl")?
                .to_string();
            let text = std::fs::read_to_string(&path).ok()?;
            small.then(|| (name, text.lines().map(str::to_string).collect()))
        })
        .collect();
    out.sort();
    assert!(out.len() >= 5, "recordings in {}", dir.display());
    out
}

/// A value of the wrong type or out of range for most fields, or a plausible one.
fn odd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(-1)),
        Just(json!(1.5)),
        Just(json!(-1e300)),
        Just(json!(u64::MAX)),
        // One past u64::MAX: no integer field holds it.
        Just(serde_json::from_str::<Value>("18446744073709551616").unwrap()),
        Just(json!([])),
        Just(json!({})),
        Just(json!("")),
        Just(json!("999.1.2.3")),
        Just(json!("fd00::zz")),
        Just(json!(["SYN", "BOGUS"])),
        select(
            &[
                "event",
                "trace_end",
                "counters",
                "live_capture",
                "stats",
                "packet"
            ][..]
        )
        .prop_map(|s| json!(s)),
        select(
            &[
                "xdp",
                "tc_ingress",
                "kfree_skb",
                "nf_bogus",
                "unknown",
                "first",
                "last"
            ][..]
        )
        .prop_map(|s| json!(s)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        ".{0,20}".prop_map(|s| json!(s)),
    ]
}

#[derive(Clone, Debug)]
enum Mangle {
    Delete(Index),
    Duplicate(Index),
    Swap(Index, Index),
    /// Cut the line after this many bytes (maybe inside a UTF-8 character: then bytes).
    Cut(Index, Index),
    /// Overwrite bytes of the line with these (not always UTF-8).
    Overwrite(Index, Index, Vec<u8>),
    RemoveField(Index, Index),
    SetField(Index, Index, Value),
    /// A field the reader does not know, or a known one on a record of another type.
    AddField(Index, String, Value),
    Replace(Index, Vec<u8>),
}

fn mangle() -> impl Strategy<Value = Mangle> {
    let i = any::<Index>;
    let field = prop_oneof![
        Just("type".to_string()),
        Just("end_ns".to_string()),
        Just("hook".to_string()),
        "[a-z_]{1,10}",
    ];
    let replacement = prop_oneof![
        vec(any::<u8>(), 0..40),
        Just(b"{\"type\":\"event\"}".to_vec()),
        Just(b"{\"type\":\"trace_end\",\"end_ns\":-1,\"lost\":0}".to_vec()),
        Just(b"[1,2,3]".to_vec()),
        Just(b"{\"type\":7}".to_vec()),
        Just(b"\xef\xbb\xbf{}".to_vec()),
    ];
    prop_oneof![
        1 => i().prop_map(Mangle::Delete),
        1 => i().prop_map(Mangle::Duplicate),
        1 => (i(), i()).prop_map(|(a, b)| Mangle::Swap(a, b)),
        1 => (i(), i()).prop_map(|(a, b)| Mangle::Cut(a, b)),
        1 => (i(), i(), vec(any::<u8>(), 1..6)).prop_map(|(a, b, c)| Mangle::Overwrite(a, b, c)),
        1 => (i(), i()).prop_map(|(a, b)| Mangle::RemoveField(a, b)),
        3 => (i(), i(), odd_value()).prop_map(|(a, b, v)| Mangle::SetField(a, b, v)),
        1 => (i(), field, odd_value()).prop_map(|(a, f, v)| Mangle::AddField(a, f, v)),
        1 => (i(), replacement).prop_map(|(a, b)| Mangle::Replace(a, b)),
    ]
}

/// Applies `mangle` to the lines of a recording (bytes: a line may stop being UTF-8).
fn apply(lines: &mut Vec<Vec<u8>>, mangle: &Mangle) {
    if lines.is_empty() {
        return;
    }
    let n = lines.len();
    let object = |line: &[u8]| serde_json::from_slice::<serde_json::Map<String, Value>>(line).ok();
    match mangle {
        Mangle::Delete(i) => drop(lines.remove(i.index(n))),
        Mangle::Duplicate(i) => lines.insert(i.index(n), lines[i.index(n)].clone()),
        Mangle::Swap(a, b) => lines.swap(a.index(n), b.index(n)),
        Mangle::Cut(i, at) => {
            let line = &mut lines[i.index(n)];
            line.truncate(at.index(line.len() + 1));
        }
        Mangle::Overwrite(i, at, bytes) => {
            let line = &mut lines[i.index(n)];
            let at = at.index(line.len() + 1);
            line.splice(
                at..(at + bytes.len()).min(line.len()),
                bytes.iter().copied(),
            );
        }
        Mangle::RemoveField(i, key) | Mangle::SetField(i, key, _) => {
            let line = &mut lines[i.index(n)];
            let Some(mut fields) = object(line) else {
                return;
            };
            let Some(name) = fields.keys().nth(key.index(fields.len().max(1))).cloned() else {
                return;
            };
            match mangle {
                Mangle::SetField(_, _, value) => drop(fields.insert(name, value.clone())),
                _ => drop(fields.remove(&name)),
            }
            *line = serde_json::to_vec(&fields).expect("a map serializes");
        }
        Mangle::AddField(i, name, value) => {
            let line = &mut lines[i.index(n)];
            let Some(mut fields) = object(line) else {
                return;
            };
            fields.insert(name.clone(), value.clone());
            *line = serde_json::to_vec(&fields).expect("a map serializes");
        }
        Mangle::Replace(i, bytes) => lines[i.index(n)] = bytes.clone(),
    }
}

/// A file of its own for each case, removed afterwards.
struct TempFile(PathBuf);

impl TempFile {
    fn with(bytes: &[u8]) -> TempFile {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "tracer-fuzz-{}-{}.jsonl",
            std::process::id(),
            NEXT.fetch_add(1, Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, bytes).expect("write a temporary recording");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What `tracer explain` does with a file, writing to memory instead of stdout.
fn explain(path: &Path) -> anyhow::Result<()> {
    let recording = read(path)?;
    let mut stats = Stats::default();
    for s in &recording.sightings {
        stats.events.add(s.hook);
    }
    let analysis = Analysis::new(recording, None);
    output::write_json(&mut Vec::new(), &analysis, &stats)?;
    output::write_text(&mut Vec::new(), &analysis, &stats, Paint::Plain)?;
    Ok(())
}

#[test]
fn mangled_recordings_explain_or_give_a_sentence() {
    let name = "mangled_recordings_explain_or_give_a_sentence";
    let fixtures = fixtures();
    let (read_ok, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    let strategy = (any::<Index>(), vec(mangle(), 1..5));
    check(name, 512, strategy, |(which, mangles)| {
        let (_, lines) = &fixtures[which.index(fixtures.len())];
        let mut lines: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
        for m in &mangles {
            apply(&mut lines, m);
        }
        let file = TempFile::with(&lines.join(&b'\n'));
        match explain(&file.0) {
            Ok(()) => drop(read_ok.fetch_add(1, Relaxed)),
            Err(error) => {
                refused.fetch_add(1, Relaxed);
                // As `main` prints it: one line, the file and line named.
                let sentence = format!("{error:#}");
                prop_assert!(!sentence.contains('\n'), "{}", sentence);
                prop_assert!(
                    sentence.contains(&file.0.display().to_string()),
                    "{}",
                    sentence
                );
            }
        }
        Ok(())
    });
    let (ok, refused) = (read_ok.load(Relaxed), refused.load(Relaxed));
    eprintln!("{name}: {ok} explained, {refused} refused with a sentence");
}

#[test]
fn any_bytes_explain_or_give_a_sentence() {
    let line = prop_oneof![
        vec(any::<u8>(), 0..60),
        ".{0,60}".prop_map(String::into_bytes),
        odd_value().prop_map(|v| json!({ "type": "event", "hook": v })
            .to_string()
            .into_bytes()),
    ];
    check(
        "any_bytes_explain_or_give_a_sentence",
        1024,
        vec(line, 0..6),
        |lines| {
            let file = TempFile::with(&lines.join(&b'\n'));
            if let Err(error) = explain(&file.0) {
                let sentence = format!("{error:#}");
                prop_assert!(!sentence.contains('\n'), "{}", sentence);
            }
            Ok(())
        },
    );
}
