//! The netfilter observation points of each traced namespace: two programs (first and last
//! priority) on PREROUTING, LOCAL_IN, FORWARD, LOCAL_OUT and POSTROUTING, IPv4 and IPv6.
//!
//! Mechanisms, the first this kernel accepts (tried, not guessed from its version):
//! - BPF netfilter links (6.4+), per namespace, at the first and last priority;
//! - fentry and fexit programs on `nf_hook_slow` (BPF trampolines, 5.5+, refused by locked-down
//!   kernels): global, they see every hook that has rules, before and after all of them;
//! - none: a rule's drop is still seen by `kfree_skb` (reason NETFILTER_DROP), but not at
//!   which hook; the explanations say so.

use std::{collections::HashMap, os::fd::OwnedFd};

use aya::{
    programs::{FEntry, FExit},
    Btf, Ebpf,
};
use tracer_common::{
    catalogue,
    hook::{netfilter_hook, Hook, Position},
};

use crate::{
    kernel::loader::{position_name, Attachment, EBPF_OBJECT},
    kernel::netns::Netns,
    kernel::nf_link::{self, NetfilterProgram, FAMILIES, HOOKS, PRIORITY_FIRST, PRIORITY_LAST},
    kernel::verifier,
};

/// How this kernel lets the tracer see the netfilter hooks.
enum Mechanism {
    /// The two netfilter programs, linked in each namespace.
    Links(Vec<(NetfilterProgram, Position)>),
    /// fentry/fexit on `nf_hook_slow`, attached once for every namespace.
    Trampolines,
    /// Neither: why, for each.
    None(String),
}

pub struct Netfilter {
    mechanism: Mechanism,
    /// Live hooks by namespace inode; dropping them detaches. Each holds a reference on its
    /// namespace (Linux 6.12+), so a deleted namespace lives on until they go.
    links: HashMap<u32, Vec<OwnedFd>>,
}

const LINKS: &str = "BPF netfilter link";
const TRAMPOLINES: &str = "fentry/fexit on nf_hook_slow";

impl Netfilter {
    /// Loads the netfilter programs against `ebpf`'s maps or, where the kernel has no such
    /// program type, attaches the trampolines. Never fails: an error is kept and reported for
    /// every namespace, and the other observation points carry on.
    pub fn load(ebpf: &mut Ebpf) -> Netfilter {
        let programs: Result<Vec<_>, String> = catalogue::netfilter_programs()
            .links
            .into_iter()
            .map(|(name, position)| {
                nf_link::load(ebpf, EBPF_OBJECT, name)
                    .map(|p| (p, position))
                    .map_err(|e| e.to_string())
            })
            .collect();
        let mechanism = match programs {
            Ok(programs) => Mechanism::Links(programs),
            Err(links) => match attach_trampolines(ebpf) {
                Ok(()) => Mechanism::Trampolines,
                Err(trampolines) => Mechanism::None(format!(
                    "netfilter links (Linux 6.4): {links}; {TRAMPOLINES}: {trampolines}"
                )),
            },
        };
        Netfilter {
            mechanism,
            links: HashMap::new(),
        }
    }

    /// Hooks both programs into every hook of `netns`: one attachment per (hook, family).
    pub fn attach(&mut self, netns: &Netns) -> Vec<Attachment> {
        let mut results = Vec::new();
        for hooknum in HOOKS {
            let hook = netfilter_hook(hooknum as u8).expect("hook numbers 0..=4");
            for (pf, family) in FAMILIES {
                let result = match &self.mechanism {
                    Mechanism::None(e) => Err(e.clone()),
                    Mechanism::Trampolines => Ok(TRAMPOLINES),
                    Mechanism::Links(programs) => {
                        attach_both(netns, programs, pf, hooknum).map(|links| {
                            self.links.entry(netns.inode).or_default().extend(links);
                            LINKS
                        })
                    }
                };
                results.push(attachment(netns, hook, family, result));
            }
        }
        results
    }

    /// The hooks a packet may pass unseen: all of netfilter's unless links bracket them (the
    /// trampolines see a hook only where some rule or conntrack is registered).
    pub fn partial_hooks(&self) -> Vec<String> {
        match self.mechanism {
            Mechanism::Links(_) => Vec::new(),
            Mechanism::Trampolines | Mechanism::None(_) => HOOKS
                .filter_map(|h| netfilter_hook(h as u8))
                .map(|h| h.name().to_string())
                .collect(),
        }
    }

    /// Whether hooks are attached in the namespace `inode`.
    pub fn holds(&self, inode: u32) -> bool {
        self.links.contains_key(&inode)
    }

    /// Detaches the hooks of one namespace; false when none were left. The kernel waits for
    /// hooks running on other CPUs, a grace period per link: the caller reads its events
    /// between two namespaces.
    pub fn detach_one_namespace(&mut self) -> bool {
        match self.links.keys().next().copied() {
            Some(inode) => self.release(inode),
            None => false,
        }
    }

    /// Detaches every hook in the namespace `inode`; whether it had any.
    pub fn release(&mut self, inode: u32) -> bool {
        self.links.remove(&inode).is_some()
    }
}

/// Links the first and the last program to one hook of one family inside `netns`.
fn attach_both(
    netns: &Netns,
    programs: &[(NetfilterProgram, Position)],
    pf: u32,
    hooknum: u32,
) -> Result<Vec<OwnedFd>, String> {
    netns
        .run(|| {
            programs
                .iter()
                .map(|(program, position)| {
                    attach_near_end(program, pf, hooknum, *position)
                        .map_err(|e| format!("{} priority: {e}", position_name(*position)))
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .map_err(|e| e.to_string())?
}

/// Priorities tried inward from each end. The kernel lets one BPF program sit at a priority
/// of a hook, and another tracer (this one, run twice) may hold the ends; the next ones are
/// still before and after every hook the kernel and iptables register (the nearest sit at
/// -450 and at `INT_MAX`, conntrack's confirmation, which the last priority never passed).
const PRIORITIES_TRIED: i32 = 16;

/// Links `program` as near the first or the last priority as is free.
fn attach_near_end(
    program: &NetfilterProgram,
    pf: u32,
    hooknum: u32,
    position: Position,
) -> std::io::Result<OwnedFd> {
    let (end, inward) = match position {
        Position::First => (PRIORITY_FIRST, 1),
        _ => (PRIORITY_LAST, -1),
    };
    let mut busy = None;
    for step in 0..PRIORITIES_TRIED {
        match nf_link::attach(program, pf, hooknum, end + inward * step) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => busy = Some(e),
            linked => return linked,
        }
    }
    Err(busy.expect("at least one priority was tried"))
}

fn attachment(netns: &Netns, hook: Hook, family: &str, result: Result<&str, String>) -> Attachment {
    let (mechanism, error) = match result {
        Ok(mechanism) => (Some(mechanism.to_string()), None),
        Err(e) => (None, Some(e)),
    };
    Attachment {
        hook,
        point: family.to_string(),
        netns: Some(netns.display_name()),
        ifname: None,
        mechanism,
        error,
        foreign_program: None,
    }
}

/// Loads and attaches the fentry and fexit programs on `nf_hook_slow`: both or neither (an
/// entry without its exit would make every packet at a hook with rules look dropped there).
fn attach_trampolines(ebpf: &mut Ebpf) -> Result<(), String> {
    let btf = Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"))?;
    let load = |e: aya::programs::ProgramError| verifier::describe(&e);
    let (entry, exit) = {
        let programs = catalogue::netfilter_programs();
        (programs.entry, programs.exit)
    };
    program::<FEntry>(ebpf, entry)?
        .load("nf_hook_slow", &btf)
        .map_err(load)?;
    program::<FExit>(ebpf, exit)?
        .load("nf_hook_slow", &btf)
        .map_err(load)?;
    let exit_link = program::<FExit>(ebpf, exit)?
        .attach()
        .map_err(|e| format!("{e:#}"))?;
    if let Err(e) = program::<FEntry>(ebpf, entry)?.attach() {
        let _ = program::<FExit>(ebpf, exit)?.detach(exit_link);
        return Err(format!("{e:#}"));
    }
    Ok(())
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program>,
{
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| format!("program {name} missing from the object"))
}
