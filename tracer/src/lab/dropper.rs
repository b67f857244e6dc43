//! The "other tool" of the XDP and tc labs: a program that drops every packet, loaded from
//! two raw instructions (no compiler, no object file) and attached with a link owned by this
//! process, so it goes away with the lab, also when the process is killed. On a kernel without
//! tcx links (before 6.6) the tc dropper is a `cls_bpf` filter between the tracer's first and
//! last ones instead, as `tc` attaches it; it goes with the lab's interfaces.

use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
pub use harness::foreign::Place;
use harness::{foreign, in_netns};

/// A drop-everything program on an interface; detached when dropped.
pub struct Dropper {
    _program: OwnedFd,
    attached: Attached,
}

enum Attached {
    Link(#[allow(dead_code)] OwnedFd),
    /// A cls_bpf filter at this preference, on (namespace, interface, direction).
    Filter(String, String, &'static str),
}

/// Between the tracer's cls_bpf filters at 1 and 65535.
const FILTER_PREF: &str = "100";

impl Dropper {
    /// Attaches `name` to `ifname` in `netns` at `place` (after the tc programs already there).
    pub fn attach(netns: &str, ifname: &str, place: Place, name: &str) -> Result<Dropper> {
        let program = foreign::load(place, name, place.drop_verdict())
            .context("cannot load the lab's drop program")?;
        let link = foreign::link(&program, netns, ifname, place)?;
        let attached = match (link, place) {
            (Ok(link), _) => Attached::Link(link),
            (Err(_), Place::TcIngress) => filter(&program, netns, ifname, "ingress")?,
            (Err(_), Place::TcEgress) => filter(&program, netns, ifname, "egress")?,
            (Err(e), Place::Xdp) => {
                return Err(e).context("cannot attach the lab's XDP drop program")
            }
        };
        Ok(Dropper {
            _program: program,
            attached,
        })
    }

    /// What the user would type to take it away.
    pub fn how_to_remove(&self, name: &str, ifname: &str) -> String {
        match &self.attached {
            Attached::Link(_) => {
                format!("detach {name} from {ifname} (bpftool net show; bpftool link detach)")
            }
            Attached::Filter(netns, ifname, direction) => format!(
                "ip netns exec {netns} tc filter del dev {ifname} {direction} pref {FILTER_PREF}"
            ),
        }
    }
}

impl Drop for Dropper {
    fn drop(&mut self) {
        if let Attached::Filter(netns, ifname, direction) = &self.attached {
            // Gone already if the lab's namespace was deleted first.
            let _ = in_netns(netns, || {
                tc(&[
                    "filter",
                    "del",
                    "dev",
                    ifname,
                    direction,
                    "pref",
                    FILTER_PREF,
                ])
            });
        }
    }
}

/// Attaches `program` as a direct-action cls_bpf filter with `tc`, which takes a program
/// only from a pinned path: pinned in a BPF filesystem mounted for that moment, in a mount
/// namespace of one thread's own, which nothing else sees and which goes with the thread (a
/// SIGKILL leaves no mount behind).
fn filter(
    program: &OwnedFd,
    netns: &str,
    ifname: &str,
    direction: &'static str,
) -> Result<Attached> {
    let dir = std::env::temp_dir().join(format!("tracer-lab-bpffs-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let attached = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<()> {
                private_bpffs(&dir)?;
                pin_and_attach(program, &dir.join("lab_tc_drop"), netns, ifname, direction)
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the attaching thread panicked")))
    });
    let _ = std::fs::remove_dir(&dir);
    attached.context("cannot attach the lab's tc drop program as a cls_bpf filter")?;
    Ok(Attached::Filter(
        netns.to_string(),
        ifname.to_string(),
        direction,
    ))
}

/// Gives the calling thread its own mount namespace, private (no mount propagates back), with
/// a BPF filesystem on `dir`. Threads and processes it starts inherit both.
fn private_bpffs(dir: &std::path::Path) -> Result<()> {
    let path = std::ffi::CString::new(dir.to_string_lossy().as_bytes())?;
    // SAFETY: unshare and mount with valid C strings; they affect this thread only.
    unsafe {
        anyhow::ensure!(
            libc::unshare(libc::CLONE_NEWNS) == 0,
            "cannot create a mount namespace: {}",
            std::io::Error::last_os_error()
        );
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        anyhow::ensure!(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null()
            ) == 0,
            "cannot make the mount namespace private: {}",
            std::io::Error::last_os_error()
        );
        anyhow::ensure!(
            libc::mount(
                c"bpf".as_ptr(),
                path.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null()
            ) == 0,
            "cannot mount a BPF filesystem: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn pin_and_attach(
    program: &OwnedFd,
    pin: &std::path::Path,
    netns: &str,
    ifname: &str,
    direction: &str,
) -> Result<()> {
    harness::bpf::pin(program, pin).context("cannot pin the drop program")?;
    let pinned = pin.to_string_lossy().into_owned();
    let add = [
        "filter",
        "add",
        "dev",
        ifname,
        direction,
        "pref",
        FILTER_PREF,
        "bpf",
        "da",
        "object-pinned",
        &pinned,
    ];
    in_netns(netns, || {
        tc(&["qdisc", "replace", "dev", ifname, "clsact"])?;
        tc(&add)
    })?
}

fn tc(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("tc").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "tc {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
