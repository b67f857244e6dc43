//! `tracer cleanup`: removes whatever a tracer could have left behind.
//!
//! This build leaves nothing but for one case: every program hangs on a bpf_link owned by the
//! process, and the kernel detaches it when the process ends, however it ends, except the tc
//! programs on a kernel without tcx (or with `--tc cls-bpf`): `cls_bpf` filters, which the
//! tracer removes when it exits but which a SIGKILL leaves. Older builds could leave:
//! - objects pinned under the BPF filesystem (`/sys/fs/bpf/tracer*`, also in subdirectories
//!   such as iproute2's `tc/globals`),
//! - XDP programs named `tracer_*` attached through netlink (not a link), which stay on the
//!   interface after the process is gone,
//! - tc `cls_bpf` filters named `tracer_*` and the clsact qdisc added for them,
//! - lab namespaces (`tracer-lab-*`) after a SIGKILL.
//!
//! A program that a live process holds (a tracer running now) is never touched: it goes away
//! when that process exits.

use std::{collections::HashSet, path::Path, process::Command};

use anyhow::{Context, Result};

use crate::{kernel::netns::Netns, kernel::privileges, kernel::xdp_owner, lab};

const BPF_FS: &str = "/sys/fs/bpf";
/// Pinned paths of older builds start with it.
const PREFIX: &str = "tracer";
/// And the names of every program of every build.
const PROGRAM_PREFIX: &str = "tracer_";

pub fn run() -> Result<()> {
    let lacking = privileges::missing(privileges::effective());
    if !lacking.is_empty() {
        anyhow::bail!(
            "cleaning up needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN); this process lacks {}",
            lacking.join(", ")
        );
    }
    let held = programs_held_by_processes();
    let mut done = remove_pins(Path::new(BPF_FS))?;
    for ns in Netns::all()? {
        let name = ns.display_name();
        let found = ns.run(|| legacy_attachments(&held))??;
        done.extend(found.into_iter().map(|what| format!("{what} in {name}")));
    }
    // A lab running now uses its namespaces; only those of a lab that was killed go.
    let mut left_alone = Vec::new();
    match lab::topology::running_lab() {
        Some(pid) => left_alone.push(format!(
            "a lab is running now (pid {pid}): its namespaces stay (`tracer lab cleanup` after it)"
        )),
        None => {
            let labs = lab::topology::cleanup()?;
            if labs > 0 {
                done.push(format!("removed {labs} lab namespaces"));
            }
        }
    }
    let running = running_tracer_programs(&held);
    if running > 0 {
        left_alone.push(format!(
            "{running} tracer programs belong to a tracer running now; they go when it exits"
        ));
    }
    if done.is_empty() {
        eprintln!("tracer: nothing of the tracer was left to remove");
    }
    for line in done.iter().chain(&left_alone) {
        eprintln!("tracer: {line}");
    }
    Ok(())
}

/// Where pins of older builds could be: the top of the BPF filesystem, and iproute2's pin
/// directories. Other tools' trees are theirs, whatever their entries are called.
const PIN_DIRS: [&str; 3] = ["", "tc/globals", "xdp/globals"];

/// Removes pinned objects and directories whose name starts with `tracer` in [`PIN_DIRS`].
fn remove_pins(bpf_fs: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for dir in PIN_DIRS.iter().map(|d| bpf_fs.join(d)) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(PREFIX) {
                continue;
            }
            let path = entry.path();
            let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            result.with_context(|| format!("cannot remove {}", path.display()))?;
            removed.push(format!("removed pinned {}", path.display()));
        }
    }
    Ok(removed)
}

/// In the calling thread's namespace: detaches XDP programs and tc filters named `tracer_*`
/// that no live process holds (a netlink attachment outlives its process; a link does not).
fn legacy_attachments(held: &HashSet<u32>) -> Result<Vec<String>> {
    let names = program_names();
    let mut done = Vec::new();
    for (ifindex, ifname) in crate::kernel::netns::interfaces() {
        match interface_leftovers(ifindex, &ifname, &names, held) {
            Ok(found) => done.extend(found),
            // Interfaces come and go while we look (another tool's namespaces): one that is
            // gone has nothing left on it.
            Err(_) if !interface_exists(&ifname) => {}
            Err(e) => return Err(e.context(format!("cannot clean up {ifname}"))),
        }
    }
    Ok(done)
}

fn interface_leftovers(
    ifindex: u32,
    ifname: &str,
    names: &[(u32, String)],
    held: &HashSet<u32>,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    if let Some(id) = xdp_owner::xdp_program_id(ifindex)? {
        let name = names
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, n)| n.as_str());
        if name.is_some_and(|n| n.starts_with(PROGRAM_PREFIX)) && !held.contains(&id) {
            detach_xdp(ifindex, ifname)?;
            done.push(format!("detached XDP program id {id} from {ifname}"));
        }
    }
    let mut removed_filter = false;
    for direction in ["ingress", "egress"] {
        let filters = tc(&["filter", "show", "dev", ifname, direction])?;
        for filter in tracer_filters(&filters, held) {
            // By handle: another tracer's filter may share the priority.
            let (protocol, pref, handle) = (&filter.protocol, &filter.pref, &filter.handle);
            tc(&[
                "filter", "del", "dev", ifname, direction, "protocol", protocol, "pref", pref,
                "handle", handle, "bpf",
            ])?;
            done.push(format!(
                "removed tc {direction} filter (pref {pref}) from {ifname}"
            ));
            removed_filter = true;
        }
    }
    // The clsact qdisc came with those filters; with none left, it goes too.
    let empty = ["ingress", "egress"]
        .iter()
        .all(|d| tc(&["filter", "show", "dev", ifname, d]).is_ok_and(|f| f.trim().is_empty()));
    if removed_filter && empty {
        tc(&["qdisc", "del", "dev", ifname, "clsact"])?;
        done.push(format!("removed the clsact qdisc from {ifname}"));
    }
    Ok(done)
}

fn interface_exists(ifname: &str) -> bool {
    crate::kernel::netns::interfaces()
        .iter()
        .any(|(_, n)| n == ifname)
}

/// Detaches whatever XDP program `ifname` has. `xdp off` detaches the native slot only where
/// the driver has one (veth does), so the generic and offload slots are tried in turn.
fn detach_xdp(ifindex: u32, ifname: &str) -> Result<()> {
    for mode in ["xdp", "xdpgeneric", "xdpoffload"] {
        // A mode the interface does not have fails; the check below is what counts.
        let _ = ip(&["link", "set", "dev", ifname, mode, "off"]);
        if xdp_owner::xdp_program_id(ifindex)?.is_none() {
            return Ok(());
        }
    }
    anyhow::bail!("cannot detach the XDP program of {ifname}")
}

/// A tc filter as `tc filter del` names it.
#[derive(Debug, PartialEq)]
struct FilterId {
    protocol: String,
    pref: String,
    handle: String,
}

/// Each tc filter whose BPF program is named `tracer_*` and held by no live process (a tracer
/// running now, with `--tc cls-bpf` or on a kernel without tcx, holds its own), as `tc filter
/// show` prints them ("filter protocol all pref 49152 bpf chain 0 handle 0x1 tracer_tc
/// direct-action not_in_hw id 42 ...").
fn tracer_filters(listing: &str, held: &HashSet<u32>) -> Vec<FilterId> {
    let word_after = |line: &str, key: &str| {
        let mut words = line.split_whitespace();
        words.find(|w| *w == key)?;
        words.next().map(str::to_string)
    };
    listing
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .any(|w| w.starts_with(PROGRAM_PREFIX))
        })
        .filter(|line| {
            let id = word_after(line, "id").and_then(|id| id.parse::<u32>().ok());
            !id.is_some_and(|id| held.contains(&id))
        })
        .filter_map(|line| {
            Some(FilterId {
                protocol: word_after(line, "protocol")?,
                pref: word_after(line, "pref")?,
                handle: word_after(line, "handle")?,
            })
        })
        .collect()
}

fn program_names() -> Vec<(u32, String)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| (p.id(), p.name_as_str().unwrap_or_default().to_string()))
        .collect()
}

/// Loaded programs named `tracer_*` that a live process holds.
fn running_tracer_programs(held: &HashSet<u32>) -> usize {
    program_names()
        .iter()
        .filter(|(id, name)| name.starts_with(PROGRAM_PREFIX) && held.contains(id))
        .count()
}

/// Ids of the programs that live processes hold, directly or through a link (from
/// `/proc/*/fdinfo`).
fn programs_held_by_processes() -> HashSet<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return HashSet::new();
    };
    procs
        .flatten()
        .filter_map(|p| std::fs::read_dir(p.path().join("fdinfo")).ok())
        .flat_map(|fds| fds.flatten())
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Runs `ip` (iproute2) in the calling thread's namespace: a child inherits it.
fn ip(args: &[&str]) -> Result<String> {
    command("ip", args)
}

fn tc(args: &[&str]) -> Result<String> {
    command("tc", args)
}

fn command(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} (iproute2)"))?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_filters_of_tracer_programs_are_picked() {
        let listing = "filter protocol all pref 49152 bpf chain 0 \n\
            filter protocol all pref 49152 bpf chain 0 handle 0x1 tracer_tc_in direct-action not_in_hw id 42 tag 0123\n\
            filter protocol all pref 49153 bpf chain 0 \n\
            filter protocol all pref 49153 bpf chain 0 handle 0x1 cilium_in direct-action not_in_hw id 43 tag 4567\n";
        let none_held = HashSet::new();
        let ours = FilterId {
            protocol: "all".into(),
            pref: "49152".into(),
            handle: "0x1".into(),
        };
        assert_eq!(tracer_filters(listing, &none_held), [ours]);
        assert!(tracer_filters("", &none_held).is_empty());
        assert!(
            tracer_filters(listing, &HashSet::from([42])).is_empty(),
            "a running tracer's filter stays"
        );
    }
}
