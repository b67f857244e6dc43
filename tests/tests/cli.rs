//! The command line's own documentation: completions and the man page come from the same clap
//! definitions as the parser, so they name every subcommand and option.

use std::process::Command;

use tests::tracer_bin;

fn stdout(args: &[&str]) -> String {
    let out = Command::new(tracer_bin())
        .args(args)
        .output()
        .expect("tracer");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn completions_know_every_subcommand_and_option() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&["completions", shell]);
        for word in ["trace", "explain", "lab", "doctor", "ready-file", "count"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
}

#[test]
fn the_man_page_is_roff_with_every_subcommand() {
    let page = stdout(&["man"]);
    assert!(page.contains(".TH tracer"), "not a man page: {page}");
    for word in ["trace", "explain", "lab", "doctor", "completions"] {
        assert!(page.contains(word), "man page lacks {word}");
    }
}

#[test]
fn trace_help_gives_examples() {
    let help = stdout(&["trace", "--help"]);
    assert!(help.contains("Examples:") && help.contains("tracer trace -n client -n server"));
}
