//! The per-interface observation points: XDP (with `--xdp`) and tc ingress and egress, each
//! with a first and a last program.
//!
//! tc is attached the way the kernel allows, decided by trying, never by version number
//! (backporting kernels such as RHEL 9's 5.14 have tcx): a tcx link ordered before and after
//! every other tcx program (6.6+), otherwise a `cls_bpf` filter on a clsact qdisc through
//! netlink at the first and the last priority. Filters are not links: they outlive the process,
//! so they are removed here at every exit, inside their namespace, and `tracer cleanup` removes
//! those of a killed tracer (they are named `tracer_*`).

use std::collections::HashMap;

use aya::{
    programs::{
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions},
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Ebpf,
};
use tracer_common::{
    catalogue,
    hook::{Hook, Position, Side},
};

use super::{
    position_name,
    tc_alone::{self, TcAlone},
    Attachment,
};
use crate::{
    kernel::netns::{Netns, NetnsRef},
    kernel::verifier,
};

/// (program name, hook, direction, order) of the tc programs, from the hook catalogue: a first
/// and a last per direction, so that another tc program's drop falls between two sightings.
fn tc_programs() -> impl Iterator<Item = (&'static str, Hook, TcAttachType, Position)> {
    catalogue::tc_programs().map(|(hook, position, program)| {
        let direction = match hook.side() {
            Side::Rx => TcAttachType::Ingress,
            _ => TcAttachType::Egress,
        };
        (program, hook, direction, position)
    })
}

/// cls_bpf priorities: 1 runs first, 65535 last (0 would let the kernel choose).
const NETLINK_FIRST: u16 = 1;
const NETLINK_LAST: u16 = u16::MAX;

/// How the tc programs are attached (`tracer trace --tc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TcMode {
    /// tcx links where the kernel has them, cls_bpf filters otherwise.
    Auto,
    /// tcx links only.
    Tcx,
    /// cls_bpf filters only.
    ClsBpf,
}

/// The loaded per-interface programs and the netlink filters they hang on.
pub struct InterfacePrograms {
    xdp: bool,
    tc: TcMode,
    /// Programs this kernel refused, with the reason: their points are reported missing on
    /// every interface.
    refused: HashMap<&'static str, String>,
    /// Filters attached through netlink, by namespace: removed on drop.
    filters: Vec<NetlinkFilters>,
    /// Where the tracer's tcx programs sit side by side (the `TC_ALONE` map).
    tc_alone: TcAlone,
}

struct NetlinkFilters {
    netns: NetnsRef,
    ifname: String,
    links: Vec<SchedClassifierLink>,
    /// Whether the clsact qdisc was ours to add (then it goes with our filters).
    added_clsact: bool,
}

impl InterfacePrograms {
    /// Loads the tc programs, and XDP with `xdp`. A program the kernel refuses costs its
    /// points, not the trace.
    pub fn load(ebpf: &mut Ebpf, xdp: bool, tc: TcMode) -> InterfacePrograms {
        let tc_programs = tc_programs().map(|(name, ..)| name);
        let xdp_program = xdp.then(catalogue::xdp_program);
        let mut refused = HashMap::new();
        for name in xdp_program.into_iter().chain(tc_programs) {
            if let Err(e) = load_program(ebpf, name) {
                refused.insert(name, e);
            }
        }
        InterfacePrograms {
            xdp,
            tc,
            refused,
            filters: Vec::new(),
            tc_alone: TcAlone::default(),
        }
    }

    /// Attaches the tc programs, and XDP with `--xdp`, to `ifname` inside `netns`. Runs on a
    /// thread that entered the namespace: interface names and netlink are per namespace.
    /// Another tool's XDP program is reported either way: its drops need its name.
    pub fn attach(&mut self, ebpf: &mut Ebpf, netns: &Netns, ifname: &str) -> Vec<Attachment> {
        let (xdp, tc, refused) = (self.xdp, self.tc, &self.refused);
        let ifindex = netns.run(|| ifindex(ifname)).ok().flatten();
        if let Some(ifindex) = ifindex {
            self.tc_alone.attaching(ebpf, ifindex);
        }
        let outcome = netns.run(|| {
            let mut results = vec![];
            if let Some(xdp) = attach_xdp(ebpf, ifname, xdp, refused) {
                results.push(xdp);
            }
            let mut filters = NetlinkFilters {
                netns: netns.reference(),
                ifname: ifname.to_string(),
                links: Vec::new(),
                added_clsact: false,
            };
            // The directions where both programs became tcx links.
            let mut tcx_links = [0u8; 2];
            for (name, hook, direction, position) in tc_programs() {
                let result = match refused.get(name) {
                    Some(e) => Err(e.clone()),
                    None => {
                        let place = (ifname, direction, position);
                        attach_tc(ebpf, name, place, tc, &mut filters)
                    }
                };
                if result.as_deref() == Ok(TCX_LINK) {
                    tcx_links[usize::from(direction == TcAttachType::Egress)] += 1;
                }
                results.push((hook, position_name(position).to_string(), result, None));
            }
            let alone = [TcAttachType::Ingress, TcAttachType::Egress]
                .into_iter()
                .zip(tcx_links)
                .filter(|&(direction, links)| links == 2 && tc_alone::only_ours(ifname, direction))
                .fold(0, |bits, (direction, _)| bits | tc_alone::bit(direction));
            (results, filters, alone)
        });
        let results = match outcome {
            Ok((results, filters, alone)) => {
                if !filters.links.is_empty() || filters.added_clsact {
                    self.filters.push(filters);
                }
                if let Some(ifindex) = ifindex {
                    self.tc_alone.attached(ebpf, ifindex, alone);
                }
                results
            }
            Err(e) => vec![(Hook::Xdp, "driver".to_string(), Err(e.to_string()), None)],
        };
        results
            .into_iter()
            .map(|(hook, point, result, foreign_program)| {
                let (mechanism, error) = match result {
                    Ok(mechanism) => (Some(mechanism), None),
                    Err(e) => (None, Some(e)),
                };
                Attachment {
                    hook,
                    point,
                    netns: Some(netns.display_name()),
                    ifname: Some(ifname.to_string()),
                    mechanism,
                    error,
                    foreign_program,
                }
            })
            .collect()
    }
}

impl Drop for InterfacePrograms {
    fn drop(&mut self) {
        self.detach();
    }
}

impl InterfacePrograms {
    /// Removes the netlink filters (and a clsact qdisc added for them) inside their
    /// namespace: netlink names interfaces by index, which means another interface elsewhere.
    /// (tcx and XDP links belong to their programs: [`super::detach_programs`].)
    pub fn detach(&mut self) {
        for filters in self.filters.drain(..) {
            let Some(netns) = filters.netns.reopen() else {
                // The namespace is gone, and its interfaces and filters with it.
                std::mem::forget(filters.links);
                continue;
            };
            let NetlinkFilters {
                ifname,
                links,
                added_clsact,
                ..
            } = filters;
            // Dropped only inside the namespace: if it cannot be entered, leaked, never
            // dropped here, where their interface index names another interface.
            let links = std::mem::ManuallyDrop::new(links);
            let _ = netns.run(move || {
                drop(std::mem::ManuallyDrop::into_inner(links));
                if added_clsact && no_filters_left(&ifname) {
                    let _ = std::process::Command::new("tc")
                        .args(["qdisc", "del", "dev", &ifname, "clsact"])
                        .output();
                }
            });
        }
    }
}

type Outcome = (Hook, String, Result<String, String>, Option<String>);

fn load_program(ebpf: &mut Ebpf, name: &str) -> Result<(), String> {
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?;
    let loaded = match prog {
        aya::programs::Program::Xdp(p) => p.load(),
        aya::programs::Program::SchedClassifier(p) => p.load(),
        _ => return Err(format!("{name} has an unexpected program type")),
    };
    loaded.map_err(|e| verifier::describe(&e))
}

/// XDP: aya creates a bpf_link; an interface that already has an XDP program answers EBUSY
/// and is left alone (only one fits, and replacing it would change fates).
fn attach_xdp(
    ebpf: &mut Ebpf,
    ifname: &str,
    xdp: bool,
    refused: &HashMap<&'static str, String>,
) -> Option<Outcome> {
    let ours = xdp.then(|| -> Result<(), String> {
        let program = catalogue::xdp_program();
        if let Some(e) = refused.get(program) {
            return Err(e.clone());
        }
        let prog: &mut Xdp = ebpf
            .program_mut(program)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| format!("program {program} missing from the object"))?;
        prog.attach(ifname, XdpMode::Default)
            .map_err(|e| format!("{e:#}"))?;
        Ok(())
    });
    let foreign = match &ours {
        Some(Ok(())) => None,
        _ => foreign_xdp(ifname),
    };
    let result = match (ours, &foreign) {
        (Some(Ok(())), _) => Ok("XDP link".to_string()),
        (_, Some(program)) => Err(format!(
            "another XDP program, {program}, holds the interface (only one fits); \
             packets it drops never reach the stack, and drops there are attributed to it"
        )),
        (Some(Err(e)), None) => Err(e),
        (None, None) => return None,
    };
    Some((Hook::Xdp, "driver".to_string(), result, foreign))
}

/// How [`attach_tc`] names a tcx attachment.
const TCX_LINK: &str = "tcx link";

/// A tcx link where the kernel has them, else a cls_bpf filter through netlink.
fn attach_tc(
    ebpf: &mut Ebpf,
    name: &str,
    (ifname, direction, position): (&str, TcAttachType, Position),
    mode: TcMode,
    filters: &mut NetlinkFilters,
) -> Result<String, String> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| format!("program {name} missing from the object"))?;
    let (order, priority) = match position {
        Position::First => (LinkOrder::first(), NETLINK_FIRST),
        _ => (LinkOrder::last(), NETLINK_LAST),
    };
    let tcx = if mode == TcMode::ClsBpf {
        "not tried (--tc cls-bpf)".to_string()
    } else {
        match prog.attach_with_options(ifname, direction, TcAttachOptions::TcxOrder(order)) {
            Ok(_) => return Ok(TCX_LINK.to_string()),
            Err(e) if mode == TcMode::Tcx => return Err(format!("tcx: {e:#}")),
            Err(e) => format!("{e:#}"),
        }
    };
    // No tcx (before 6.6): the classic clsact qdisc, which may exist already.
    match tc::qdisc_add_clsact(ifname) {
        Ok(()) => filters.added_clsact = true,
        Err(tc::TcError::AlreadyAttached) => {}
        Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(format!("tcx: {tcx}; clsact qdisc: {e:#}")),
    }
    let options = TcAttachOptions::Netlink(NlOptions {
        priority,
        ..NlOptions::default()
    });
    let id = prog
        .attach_with_options(ifname, direction, options)
        .map_err(|e| format!("tcx: {tcx}; cls_bpf filter: {e:#}"))?;
    let link = prog.take_link(id).map_err(|e| format!("{e:#}"))?;
    filters.links.push(link);
    Ok(format!("cls_bpf filter (netlink), priority {priority}"))
}

/// Whether `ifname` (in the calling thread's namespace) has no tc filter in either direction.
fn no_filters_left(ifname: &str) -> bool {
    ["ingress", "egress"].iter().all(|direction| {
        std::process::Command::new("tc")
            .args(["filter", "show", "dev", ifname, direction])
            .output()
            .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii().is_empty())
    })
}

/// The XDP program another tool attached to `ifname` (of the current thread's namespace):
/// only one fits on an interface, so the packets it drops never reach the stack, and the user
/// must know its name.
fn foreign_xdp(ifname: &str) -> Option<String> {
    crate::kernel::xdp_owner::xdp_program(ifindex(ifname)?)
        .ok()
        .flatten()
}

/// The index of `ifname` in the calling thread's namespace.
fn ifindex(ifname: &str) -> Option<u32> {
    let name = std::ffi::CString::new(ifname).ok()?;
    // SAFETY: a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (ifindex != 0).then_some(ifindex)
}
