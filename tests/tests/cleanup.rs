//! `tracer cleanup` removes what an older build could have left — objects pinned on the BPF
//! filesystem, an XDP program attached through netlink, a tc `cls_bpf` filter with the clsact
//! qdisc added for it — and leaves a tracer that runs now, and other tools' programs, alone.

use std::path::{Path, PathBuf};

use harness::foreign::{Foreign, Place};
use tests::{require_privileges, run, Pair, Tracer, ADDR_B};

/// Loads `name` returning `verdict` for `place` and pins it at `path` (on the BPF
/// filesystem), as an older build could have left it. The pin holds the program; no process
/// does.
fn pin_program(place: Place, name: &str, verdict: i32, path: &Path) {
    harness::foreign::load(place, name, verdict)
        .and_then(|program| harness::bpf::pin(&program, path))
        .expect("a pinned program");
}

/// Pinned paths named like an older build's, unique to this test process.
fn pin_path(what: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/tracer_{what}_{}", std::process::id()))
}

/// The BPF filesystem, mounted for the test where the machine has none (and unmounted after).
struct BpfFs {
    mounted_here: bool,
}

impl BpfFs {
    fn ensure() -> BpfFs {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let mounted = mounts
            .lines()
            .any(|l| l.split(' ').nth(1) == Some("/sys/fs/bpf"));
        if !mounted {
            tests::sh("mount -t bpf bpf /sys/fs/bpf");
        }
        BpfFs {
            mounted_here: !mounted,
        }
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = run("umount /sys/fs/bpf");
        }
    }
}

fn ping(pair: &Pair) -> bool {
    pair.a
        .run(&format!("ping -c 1 -W 2 {ADDR_B}"))
        .status
        .success()
}

#[test]
fn cleanup_removes_what_old_builds_left_and_nothing_else() {
    require_privileges();
    let _bpffs = BpfFs::ensure();
    let pair = Pair::create();
    // What an older build could leave: pinned programs, attached by netlink and tc, which
    // outlive the process. They pass every packet, as the tracer's programs do.
    let (xdp_pin, tc_pin) = (pin_path("xdp"), pin_path("tc"));
    pin_program(Place::Xdp, "tracer_xdp", 2, &xdp_pin);
    pin_program(Place::TcIngress, "tracer_tc_in", 0, &tc_pin);
    // Where iproute2 pins: also searched.
    let globals = PathBuf::from("/sys/fs/bpf/tc/globals");
    std::fs::create_dir_all(&globals).unwrap();
    let globals_pin = globals.join(format!("tracer_old_{}", std::process::id()));
    pin_program(Place::TcIngress, "tracer_old", 0, &globals_pin);
    // Run from a thread inside the namespace: `ip netns exec` and `ip -n` mount a fresh
    // /sys, without the pins.
    let attach = [
        format!("ip link set dev vb xdpgeneric pinned {}", xdp_pin.display()),
        "tc qdisc add dev vb clsact".to_string(),
        format!(
            "tc filter add dev vb ingress bpf direct-action object-pinned {}",
            tc_pin.display()
        ),
    ];
    pair.b
        .enter(move || attach.iter().for_each(|line| drop(tests::sh(line))));
    let before = pair.b.sh("bpftool net show dev vb");
    assert!(
        before.contains("generic id") && before.contains("tracer_tc"),
        "leftovers in place: {before}"
    );
    // Another tool's program and a tracer running now must stay.
    let other = Foreign::attach(&pair.a.name, "va", Place::Xdp, "other_tool", 2)
        .expect("another tool's XDP program");
    let tracer = Tracer::start(&["-n", &pair.a.name, "-n", &pair.b.name, "icmp"]);
    assert!(ping(&pair), "the leftovers pass packets");

    let out = run(&format!("{} cleanup", tests::tracer_bin().display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for said in [
        format!("removed pinned {}", xdp_pin.display()),
        format!("removed pinned {}", tc_pin.display()),
        format!("removed pinned {}", globals_pin.display()),
        "detached XDP program".to_string(),
        "removed tc ingress filter".to_string(),
        "removed the clsact qdisc from vb".to_string(),
        "belong to a tracer running now".to_string(),
    ] {
        assert!(
            stderr.contains(&said),
            "cleanup did not say '{said}': {stderr}"
        );
    }
    assert!(
        !xdp_pin.exists() && !tc_pin.exists() && !globals_pin.exists(),
        "pins removed"
    );
    let after = pair.b.sh("bpftool net show dev vb");
    assert!(
        !after.contains("generic id") && !after.contains("tracer_tc"),
        "leftovers detached: {after}\ncleanup said: {stderr}"
    );
    assert!(
        !pair.b.sh("tc qdisc show dev vb").contains("clsact"),
        "clsact removed with its last filter"
    );
    // bpftool names no XDP program and shows no tcx here: ask by id and by behaviour.
    let on_va = pair.a.sh("bpftool net show dev va");
    assert!(
        on_va.contains("driver id"),
        "another tool's XDP program stays: {on_va}"
    );

    // The running tracer still traces.
    assert!(ping(&pair));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let report = tracer.finish();
    assert!(
        report.packets().any(|p| p["dst"] == ADDR_B),
        "the running tracer saw the ping after the cleanup"
    );
    drop(other);

    let again = run(&format!("{} cleanup", tests::tracer_bin().display()));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        again.status.success() && stderr.contains("nothing of the tracer was left to remove"),
        "a second cleanup finds nothing: {stderr}"
    );
}
