//! What a trace says on stderr of the netfilter hooks it leaves unlinked (`--netfilter-hooks
//! needed`), and of those it links once something registers there.

use super::Session;

/// The hooks of both families that `--netfilter-hooks needed` may leave unlinked.
const SKIPPABLE_HOOKS: usize = crate::kernel::netfilter::SKIPPABLE.len() * 2;

impl Session {
    /// Says on stderr which netfilter hooks are left unlinked, and why.
    pub(super) fn report_idle_netfilter_hooks(&self) {
        if let Some(why) = self.netfilter.census_failed() {
            eprintln!(
                "tracer: note: every netfilter hook is linked: which have something registered \
                 cannot be known ({why})"
            );
        }
        if self.netfilter.first_only_hooks() > 0 {
            eprintln!(
                "tracer: note: netfilter's LOCAL_IN and FORWARD get only the tracer's first \
                 program where nothing is registered ({} hooks): nothing could come between \
                 it and the last one; the last is linked when something registers there",
                self.netfilter.first_only_hooks()
            );
        }
        let idle = self.netfilter.idle_hooks();
        if idle.is_empty() {
            return;
        }
        let name = |inode: u32| {
            self.namespaces
                .iter()
                .find(|ns| ns.inode == inode)
                .map_or_else(|| format!("netns {inode}"), |ns| ns.display_name.clone())
        };
        let mut places: Vec<String> = idle
            .iter()
            .map(|(inode, n)| format!("{n} of {SKIPPABLE_HOOKS} in {}", name(*inode)))
            .collect();
        places.sort();
        if places.len() > 3 {
            let hooks: usize = idle.iter().map(|(_, n)| n).sum();
            places = vec![format!("{hooks} in {} namespaces", idle.len())];
        }
        eprintln!(
            "tracer: note: netfilter's PREROUTING, LOCAL_OUT and POSTROUTING are not linked \
             where nothing is registered ({}): nothing there can drop or change a packet; \
             each is linked when something registers there (--netfilter-hooks all links \
             every hook)",
            places.join(", ")
        );
    }

    /// Links the netfilter hooks where something registered since the last look.
    pub(super) fn link_new_netfilter_registrations(&mut self) {
        for line in self.netfilter.link_new_registrations(&self.namespaces) {
            eprintln!("tracer: {line}");
        }
    }
}
