//! The netfilter observation points of each traced namespace: two programs (first and last
//! priority) on PREROUTING, LOCAL_IN, FORWARD, LOCAL_OUT and POSTROUTING, IPv4 and IPv6.

use std::{collections::HashMap, os::fd::OwnedFd};

use aya::Ebpf;
use tracer_common::hook::{netfilter_hook, Hook, Position};

use crate::{
    loader::{position_name, Attachment, EBPF_OBJECT},
    netns::Netns,
    nf_link::{self, NetfilterProgram, FAMILIES, HOOKS, PRIORITY_FIRST, PRIORITY_LAST},
};

/// The two loaded programs, or why they could not be loaded (kernel older than 6.4, ...).
pub struct Netfilter {
    programs: Result<Vec<(NetfilterProgram, Position)>, String>,
    /// Live hooks by namespace inode; dropping them detaches. Each holds a reference on its
    /// namespace (Linux 6.12+), so a deleted namespace lives on until they go.
    links: HashMap<u32, Vec<OwnedFd>>,
}

impl Netfilter {
    /// Loads the programs against `ebpf`'s maps. Never fails: an error is kept and reported
    /// for every namespace, and the other observation points carry on.
    pub fn load(ebpf: &Ebpf) -> Netfilter {
        let programs = [
            ("tracer_nf_first", Position::First),
            ("tracer_nf_last", Position::Last),
        ]
        .into_iter()
        .map(|(name, position)| {
            nf_link::load(ebpf, EBPF_OBJECT, name)
                .map(|p| (p, position))
                .map_err(|e| format!("{e} (netfilter programs need Linux 6.4)"))
        })
        .collect();
        Netfilter {
            programs,
            links: HashMap::new(),
        }
    }

    /// Hooks both programs into every hook of `netns`: one attachment per (hook, family).
    pub fn attach(&mut self, netns: &Netns) -> Vec<Attachment> {
        let mut results = Vec::new();
        for hooknum in HOOKS {
            let hook = netfilter_hook(hooknum as u8).expect("hook numbers 0..=4");
            for (pf, family) in FAMILIES {
                let error = match &self.programs {
                    Err(e) => Some(e.clone()),
                    Ok(programs) => match attach_both(netns, programs, pf, hooknum) {
                        Ok(links) => {
                            self.links.entry(netns.inode).or_default().extend(links);
                            None
                        }
                        Err(e) => Some(e),
                    },
                };
                results.push(attachment(netns, hook, family, error));
            }
        }
        results
    }

    /// Whether hooks are attached in the namespace `inode`.
    pub fn holds(&self, inode: u32) -> bool {
        self.links.contains_key(&inode)
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
                    let priority = match position {
                        Position::First => PRIORITY_FIRST,
                        _ => PRIORITY_LAST,
                    };
                    nf_link::attach(program, pf, hooknum, priority)
                        .map_err(|e| format!("{} priority: {e}", position_name(*position)))
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .map_err(|e| e.to_string())?
}

fn attachment(netns: &Netns, hook: Hook, family: &str, error: Option<String>) -> Attachment {
    Attachment {
        hook,
        point: family.to_string(),
        netns: Some(netns.display_name()),
        ifname: None,
        error,
        foreign_program: None,
    }
}
