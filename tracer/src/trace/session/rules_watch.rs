//! The drop rules read again while the trace runs: a packet netfilter dropped is printed with
//! the rule that dropped it, which only the rules' counters tell, and they must be read after
//! the drop. A read runs `nft` and `iptables-save` (tens of milliseconds) in each namespace
//! where a drop waits for it, not in every traced one: what the live view writes after the
//! drop waits too. It runs beside the event loop, one at a time.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::kernel::{
    netns::NetnsRef,
    rules::{self, NamespaceRules, RulesSnapshot, Ruleset},
};

pub(super) struct RulesWatch {
    /// Each traced namespace and its rules when tracing started (`None`: not readable then).
    before: Arc<Vec<(NetnsRef, Option<Ruleset>)>>,
    reading: bool,
    done_tx: mpsc::UnboundedSender<RulesSnapshot>,
    done_rx: mpsc::UnboundedReceiver<RulesSnapshot>,
}

impl RulesWatch {
    pub fn new(before: Vec<(NetnsRef, Option<Ruleset>)>) -> RulesWatch {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        RulesWatch {
            before: Arc::new(before),
            reading: false,
            done_tx,
            done_rx,
        }
    }

    /// Starts a read of the namespaces `netns` (inodes) in the background, unless one is under
    /// way (its end brings the next).
    pub fn start(&mut self, netns: Vec<u32>) {
        if self.reading {
            return;
        }
        self.reading = true;
        let before = Arc::clone(&self.before);
        let done = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let started_ns = crate::kernel::clock::monotonic_ns();
            let namespaces = changes(&before, Some(&netns));
            // The receiver goes only with the trace: nothing is waiting for it any more.
            let _ = done.send(RulesSnapshot {
                started_ns,
                read: Some(netns),
                namespaces,
            });
        });
    }

    /// The read under way, once it is done (never `None`: the watch holds a sender).
    pub async fn done(&mut self) -> Option<RulesSnapshot> {
        let snapshot = self.done_rx.recv().await;
        self.reading = false;
        snapshot
    }

    pub fn reading(&self) -> bool {
        self.reading
    }

    /// How each namespace's drop rules' counters rose since tracing started, read now.
    pub fn read_now(&self) -> Vec<NamespaceRules> {
        changes(&self.before, None)
    }
}

/// The changes of each namespace still there whose rules could be read at both ends, of
/// those in `only` (inodes) if given.
fn changes(before: &[(NetnsRef, Option<Ruleset>)], only: Option<&[u32]>) -> Vec<NamespaceRules> {
    let mut out = Vec::new();
    let wanted = |ns: &NetnsRef| only.is_none_or(|only| only.contains(&ns.inode));
    for (ns, before) in before.iter().filter(|(ns, _)| wanted(ns)) {
        let after = ns.reopen().and_then(|ns| ns.run(rules::read).ok());
        if let (Some(before), Some(after)) = (before, after) {
            out.push(NamespaceRules {
                netns_name: ns.display_name.clone(),
                rules: rules::changes(before, &after),
            });
        }
    }
    out
}
