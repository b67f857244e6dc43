//! Where `--netfilter-hooks needed` waits for something to register: hooks left unlinked
//! ([`super::SKIPPABLE`]), and LOCAL_IN and FORWARD hooks with the first program alone
//! ([`super::FIRST_ONLY`]). The census, taken again every tenth of a second, links them.

use std::collections::HashMap;

use tracer_common::{hook::netfilter_hook, hook::Position, nf_census::hook_bit};

use super::{FamilyHook, Netfilter};
use crate::kernel::{
    netns::{Netns, NetnsRef},
    nf_link::FAMILIES,
};

impl Netfilter {
    /// Links the first program alone (see [`super::FIRST_ONLY`]), having told it so first
    /// through `NF_FIRST_ONLY`. Without that map both programs are linked.
    pub(super) fn link_first_only(
        &mut self,
        netns: &Netns,
        pf: u32,
        hooknum: u32,
    ) -> Result<&'static str, String> {
        let (Some(map), Some(bit)) = (self.first_only_map.as_mut(), hook_bit(pf, hooknum)) else {
            return self.link(netns, pf, hooknum);
        };
        let hooks = map.get(&netns.inode, 0).unwrap_or(0);
        if map.insert(netns.inode, hooks | bit, 0).is_err() {
            return self.link(netns, pf, hooknum);
        }
        let linked = self.link_positions(netns, pf, hooknum, &[Position::First]);
        if linked.is_ok() {
            let hooks = self.first_only.entry(netns.inode).or_default();
            hooks.push((pf, hooknum));
        }
        linked
    }

    /// Links the last program where the first one is alone, then tells the first one (in
    /// that order: in between, a second function at the hook reads as someone else's, and
    /// the first program leaves the packet to the last).
    fn link_last_too(&mut self, netns: &Netns, pf: u32, hooknum: u32) -> Result<(), String> {
        self.link_positions(netns, pf, hooknum, &[Position::Last])?;
        if let (Some(map), Some(bit)) = (self.first_only_map.as_mut(), hook_bit(pf, hooknum)) {
            let hooks = map.get(&netns.inode, 0).unwrap_or(0) & !bit;
            // A bit left set only makes the first program leave more packets to the last.
            let _ = match hooks {
                0 => map.remove(&netns.inode),
                _ => map.insert(netns.inode, hooks, 0),
            };
        }
        Ok(())
    }

    /// The hooks left unlinked, as (namespace inode, how many of the ten).
    pub fn idle_hooks(&self) -> Vec<(u32, usize)> {
        self.idle
            .iter()
            .map(|(ns, hooks)| (*ns, hooks.len()))
            .collect()
    }

    /// How many hooks have their first program alone, in every namespace.
    pub fn first_only_hooks(&self) -> usize {
        self.first_only.values().map(Vec::len).sum()
    }

    /// Whether some hook waits for a registration (see [`Netfilter::link_new_registrations`]).
    pub fn watches(&self) -> bool {
        let waiting = |hooks: &HashMap<u32, Vec<FamilyHook>>| hooks.values().any(|h| !h.is_empty());
        waiting(&self.idle) || waiting(&self.first_only)
    }

    /// Takes the census of every namespace with hooks waiting again, and links the unlinked
    /// hooks where something registered since, and the last program where the first is no
    /// longer alone: a line for each, to tell the user.
    pub fn link_new_registrations(&mut self, namespaces: &[NetnsRef]) -> Vec<String> {
        let mut said = Vec::new();
        for reference in namespaces {
            let waiting = |hooks: &HashMap<u32, Vec<FamilyHook>>| {
                hooks.get(&reference.inode).is_some_and(|h| !h.is_empty())
            };
            if !waiting(&self.idle) && !waiting(&self.first_only) {
                continue;
            }
            // Gone, or a failed census: the next round tries again.
            let Some(netns) = reference.reopen() else {
                continue;
            };
            let Some(registered) = self.registered(&netns) else {
                continue;
            };
            // The census counts the first program where it is linked alone.
            let more_than = |n: u16| move |pf, hooknum| registered.count(pf, hooknum) > Some(n);
            let now_idle = take_matching(&mut self.idle, netns.inode, more_than(0));
            let now_first_only = take_matching(&mut self.first_only, netns.inode, more_than(1));
            let (mut linked, mut failed) = (Vec::new(), Vec::new());
            for (pf, hooknum) in now_idle {
                match self.link(&netns, pf, hooknum) {
                    Ok(_) => linked.push(hook_name(pf, hooknum)),
                    Err(e) => failed.push(format!("{}: {e}", hook_name(pf, hooknum))),
                }
            }
            for (pf, hooknum) in now_first_only {
                let name = format!("{} (its last program)", hook_name(pf, hooknum));
                match self.link_last_too(&netns, pf, hooknum) {
                    Ok(()) => linked.push(name),
                    Err(e) => failed.push(format!("{name}: {e}")),
                }
            }
            let ns = &reference.display_name;
            if !linked.is_empty() {
                said.push(format!(
                    "netfilter: something registered in {ns}: linked at {}",
                    linked.join(", ")
                ));
            }
            if !failed.is_empty() {
                said.push(format!(
                    "warning: netfilter: something registered in {ns}, not linked: {}",
                    failed.join("; ")
                ));
            }
        }
        said
    }
}

/// Takes out of `hooks` those of namespace `inode` that are `now` (family, hook number).
fn take_matching(
    hooks: &mut HashMap<u32, Vec<FamilyHook>>,
    inode: u32,
    now: impl Fn(u32, u32) -> bool,
) -> Vec<FamilyHook> {
    let Some(waiting) = hooks.get_mut(&inode) else {
        return Vec::new();
    };
    let (taken, still) = std::mem::take(waiting)
        .into_iter()
        .partition(|(pf, hooknum)| now(*pf, *hooknum));
    *waiting = still;
    taken
}

/// "PREROUTING (IPv4)", as the user reads a hook of a family.
pub(super) fn hook_name(pf: u32, hooknum: u32) -> String {
    let hook = netfilter_hook(hooknum as u8).map_or("?", |h| h.name());
    let family = FAMILIES
        .iter()
        .find(|(p, _)| *p == pf)
        .map_or("?", |(_, name)| *name);
    format!("{hook} ({family})")
}
