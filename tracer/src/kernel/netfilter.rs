//! The netfilter observation points of each traced namespace: two programs (first and last
//! priority) on PREROUTING, LOCAL_IN, FORWARD, LOCAL_OUT and POSTROUTING, IPv4 and IPv6.
//!
//! Mechanisms, the first this kernel accepts (tried, not guessed from its version):
//! - BPF netfilter links (6.4+), per namespace, at the first and last priority; by default
//!   PREROUTING, LOCAL_OUT and POSTROUTING only where something is registered, and LOCAL_IN
//!   and FORWARD with their first program alone where nothing is ([`NetfilterHooks`]);
//! - fentry and fexit programs on `nf_hook_slow` (BPF trampolines, 5.5+, refused by locked-down
//!   kernels): global, they see every hook that has rules, before and after all of them;
//! - none: a rule's drop is still seen by `kfree_skb` (reason NETFILTER_DROP), but not at
//!   which hook; the explanations say so.

use std::{
    collections::{BTreeSet, HashMap},
    os::fd::OwnedFd,
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData},
    programs::{FEntry, FExit},
    Btf, Ebpf,
};
use tracer_common::{
    catalogue,
    hook::{netfilter_hook, Hook, Position},
    names,
};

use crate::{
    kernel::loader::{position_name, Attachment, EBPF_OBJECT},
    kernel::netns::Netns,
    kernel::nf_census::{Census, Registered},
    kernel::nf_link::{self, NetfilterProgram, FAMILIES, HOOKS, PRIORITY_FIRST, PRIORITY_LAST},
    kernel::verifier,
};

/// Which netfilter hooks get the tracer's links (`--netfilter-hooks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NetfilterHooks {
    /// LOCAL_IN and FORWARD everywhere: passing them is what says a packet was handed to the
    /// local stack or forwarded. PREROUTING, LOCAL_OUT and POSTROUTING only where something is
    /// registered (a rule's chain, conntrack, another program), found when the trace starts
    /// and every tenth of a second after: a hook with nothing registered is skipped by the
    /// kernel, nothing there can drop or change a packet, and a link would make the kernel
    /// run netfilter there for every packet. Where nothing is registered at LOCAL_IN or
    /// FORWARD, only the first program is linked there (nothing could sit between it and
    /// the last one), the last one too once something registers.
    Needed,
    /// Every hook, as labs do: the path through netfilter shown whole, at a cost to every
    /// packet of the namespace.
    All,
}

/// How this kernel lets the tracer see the netfilter hooks.
enum Mechanism {
    /// The two netfilter programs, linked in each namespace.
    Links(Vec<(NetfilterProgram, Position)>),
    /// fentry/fexit on `nf_hook_slow`, attached once for every namespace.
    Trampolines,
    /// Neither: why, for each.
    None(String),
}

/// A netfilter hook of one family: (`NFPROTO_*`, hook number).
type FamilyHook = (u32, u32);

mod registrations;

pub struct Netfilter {
    mechanism: Mechanism,
    /// Live hooks by namespace inode; dropping them detaches. Each holds a reference on its
    /// namespace (Linux 6.12+), so a deleted namespace lives on until they go.
    links: HashMap<u32, Vec<OwnedFd>>,
    /// Finds the hooks where something is registered; `None` links every hook.
    census: Option<Census>,
    /// Why every hook is linked though `--netfilter-hooks needed` asked otherwise.
    census_failed: Option<String>,
    /// Hooks left unlinked because nothing was registered there, by namespace inode.
    idle: HashMap<u32, Vec<FamilyHook>>,
    /// The hook numbers ever left unlinked: a rule registered there during the trace may
    /// drop a packet before the hook is linked (see [`Netfilter::partial_hooks`]).
    ever_idle: BTreeSet<u32>,
    /// Hooks with only the first program linked ([`FIRST_ONLY`]), by namespace inode.
    first_only: HashMap<u32, Vec<FamilyHook>>,
    /// The kernel's copy of `first_only` (`NF_FIRST_ONLY`): the first program tells from it
    /// whether a second function at its hook is its last one or someone else's.
    first_only_map: Option<BpfHashMap<MapData, u32, u32>>,
}

const LINKS: &str = "BPF netfilter link";
const TRAMPOLINES: &str = "fentry/fexit on nf_hook_slow";

/// The hooks linked only where something is registered, with `--netfilter-hooks needed`:
/// PREROUTING, LOCAL_OUT and POSTROUTING. LOCAL_IN and FORWARD are always linked: a packet
/// passing them is how a journey knows it was delivered or forwarded (a pure ACK, say, is
/// seen by nothing else after tc ingress).
pub const SKIPPABLE: [u32; 3] = [0, 3, 4];

/// The hooks linked with their first program alone where nothing is registered (with
/// `--netfilter-hooks needed`): LOCAL_IN and FORWARD. Nothing can sit between the first and
/// the last program there, so the first one's sighting says what the last one's would (it
/// marks it so), and the kernel runs one BPF program there for every packet instead of two.
/// The last is linked as soon as something registers there.
pub const FIRST_ONLY: [u32; 2] = [1, 2];

impl Netfilter {
    /// Loads the netfilter programs against `ebpf`'s maps or, where the kernel has no such
    /// program type, attaches the trampolines. Never fails: an error is kept and reported for
    /// every namespace, and the other observation points carry on.
    pub fn load(ebpf: &mut Ebpf, hooks: NetfilterHooks) -> Netfilter {
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
        // Only links are placed hook by hook; the trampolines see registered hooks only.
        let (census, census_failed) = match (&mechanism, hooks) {
            (Mechanism::Links(_), NetfilterHooks::Needed) => match Census::load(ebpf) {
                Ok(census) => (Some(census), None),
                Err(e) => (None, Some(e)),
            },
            _ => (None, None),
        };
        let first_only_map = census
            .as_ref()
            .and_then(|_| BpfHashMap::try_from(ebpf.take_map(names::NF_FIRST_ONLY)?).ok());
        Netfilter {
            mechanism,
            links: HashMap::new(),
            census,
            census_failed,
            idle: HashMap::new(),
            ever_idle: BTreeSet::new(),
            first_only: HashMap::new(),
            first_only_map,
        }
    }

    /// Why every hook is linked though only those needed were asked for, if so.
    pub fn census_failed(&self) -> Option<&str> {
        self.census_failed.as_deref()
    }

    /// Hooks both programs into the hooks of `netns`: one attachment per (hook, family)
    /// linked. With the census, a hook that may be left out ([`SKIPPABLE`]) where nothing is
    /// registered is left for [`Netfilter::link_new_registrations`].
    pub fn attach(&mut self, netns: &Netns) -> Vec<Attachment> {
        // Counted before any link of ours is there.
        let registered = self.registered(netns);
        let mut results = Vec::new();
        for hooknum in HOOKS {
            let hook = netfilter_hook(hooknum as u8).expect("hook numbers 0..=4");
            for (pf, family) in FAMILIES {
                let nothing_there = registered.and_then(|r| r.any(pf, hooknum)) == Some(false);
                if nothing_there && SKIPPABLE.contains(&hooknum) {
                    self.idle
                        .entry(netns.inode)
                        .or_default()
                        .push((pf, hooknum));
                    self.ever_idle.insert(hooknum);
                    continue;
                }
                let result = if nothing_there && FIRST_ONLY.contains(&hooknum) {
                    self.link_first_only(netns, pf, hooknum)
                } else {
                    self.link(netns, pf, hooknum)
                };
                results.push(attachment(netns, hook, family, result));
            }
        }
        results
    }

    /// What the census finds in `netns`; `None` without a census, or when it fails there
    /// (then every hook is linked, and the failure kept for [`Netfilter::census_failed`]).
    fn registered(&mut self, netns: &Netns) -> Option<Registered> {
        match self.census.as_ref()?.take(netns) {
            Ok(registered) => Some(registered),
            Err(e) => {
                self.census_failed = Some(format!("in {}: {e}", netns.display_name()));
                None
            }
        }
    }

    fn link(&mut self, netns: &Netns, pf: u32, hooknum: u32) -> Result<&'static str, String> {
        self.link_positions(netns, pf, hooknum, &[Position::First, Position::Last])
    }

    fn link_positions(
        &mut self,
        netns: &Netns,
        pf: u32,
        hooknum: u32,
        positions: &[Position],
    ) -> Result<&'static str, String> {
        match &self.mechanism {
            Mechanism::None(e) => Err(e.clone()),
            Mechanism::Trampolines => Ok(TRAMPOLINES),
            Mechanism::Links(programs) => {
                let programs: Vec<_> = programs
                    .iter()
                    .filter(|(_, p)| positions.contains(p))
                    .collect();
                attach_programs(netns, &programs, pf, hooknum).map(|links| {
                    self.links.entry(netns.inode).or_default().extend(links);
                    LINKS
                })
            }
        }
    }

    /// The hooks a packet may pass unseen: all of netfilter's unless links bracket them (the
    /// trampolines see a hook only where some rule or conntrack is registered); with the
    /// census, those left unlinked at some time (a rule registered there between two
    /// censuses drops unbracketed).
    pub fn partial_hooks(&self) -> Vec<String> {
        let names = |hooks: &mut dyn Iterator<Item = u32>| {
            hooks
                .filter_map(|h| netfilter_hook(h as u8))
                .map(|h| h.name().to_string())
                .collect()
        };
        match self.mechanism {
            Mechanism::Links(_) => names(&mut self.ever_idle.iter().copied()),
            Mechanism::Trampolines | Mechanism::None(_) => names(&mut HOOKS.clone()),
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
        self.idle.clear();
        self.first_only.clear();
        match self.links.keys().next().copied() {
            Some(inode) => self.release(inode),
            None => false,
        }
    }

    /// Detaches every hook in the namespace `inode` and stops watching it; whether it had any.
    pub fn release(&mut self, inode: u32) -> bool {
        self.idle.remove(&inode);
        if self.first_only.remove(&inode).is_some() {
            if let Some(map) = self.first_only_map.as_mut() {
                let _ = map.remove(&inode);
            }
        }
        self.links.remove(&inode).is_some()
    }
}

/// Links `programs` (the first, the last, or both) to one hook of one family inside `netns`.
fn attach_programs(
    netns: &Netns,
    programs: &[&(NetfilterProgram, Position)],
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
