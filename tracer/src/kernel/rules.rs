//! Which rule dropped it: the netfilter rules of each traced namespace, read when tracing
//! starts and when it stops, without changing the ruleset. A rule whose counter rose during
//! the trace, at the hook where a packet died, names the drop better than the hook alone.
//!
//! Read from `nft -a list ruleset` (nftables, and iptables-nft's rules, whose iptables form
//! `iptables-nft-save -c` gives) and from `iptables-legacy-save -c` where legacy tables exist.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    process::Command,
};

use serde::{Deserialize, Serialize};

mod nft;
mod xtables;

/// Which tool's view of the rule the user is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleSource {
    Nftables,
    /// iptables on nf_tables (`iptables-nft`), shown in iptables form.
    Iptables,
    IptablesLegacy,
}

impl RuleSource {
    pub fn name(self) -> &'static str {
        match self {
            RuleSource::Nftables => "nftables",
            RuleSource::Iptables => "iptables",
            RuleSource::IptablesLegacy => "iptables-legacy",
        }
    }
}

/// One rule as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub source: RuleSource,
    /// `ip`, `ip6`, `inet`, `bridge`, ...
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The hook of a base chain (`input`); `None` in a chain rules jump to.
    pub hook: Option<String>,
    /// nftables: the rule's handle; iptables: its place in its chain, from 1.
    pub id: u64,
    /// The rule without its counter values.
    pub text: String,
    /// `None`: the rule has no counter.
    pub packets: Option<u64>,
}

/// A base chain's policy (`drop` or `accept`).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub family: String,
    pub table: String,
    pub chain: String,
    pub hook: Option<String>,
    pub policy: String,
    /// iptables counts the packets its policy decided; nftables does not.
    pub packets: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ruleset {
    pub rules: Vec<Rule>,
    pub policies: Vec<Policy>,
}

/// A rule (or a policy) that can drop, and how much its counter rose over the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DropRule {
    pub source: RuleSource,
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The hooks it can be met at: its own chain's, or (in a chain rules jump to) those of its
    /// table's base chains.
    pub hooks: Vec<String>,
    /// nftables handle or iptables place; 0 for a chain's policy.
    pub id: u64,
    /// The rule, or `policy drop`.
    pub text: String,
    /// `None`: no counter to tell.
    pub rose: Option<u64>,
}

impl DropRule {
    /// `table inet filter, chain input, handle 4`.
    pub fn place(&self) -> String {
        let mut place = format!(
            "{} table {} {}, chain {}",
            self.source.name(),
            self.family,
            self.table,
            self.chain
        );
        match (self.source, self.id) {
            (_, 0) => {}
            (RuleSource::Nftables, handle) => place.push_str(&format!(", handle {handle}")),
            (_, n) => place.push_str(&format!(", rule {n}")),
        }
        place
    }

    /// Whether a packet of this IP version, at this hook (`input`, `forward`; a bridge hook
    /// when `bridge`), meets this rule.
    pub fn meets(&self, hook: &str, ipv6: bool, bridge: bool) -> bool {
        let family = match (bridge, ipv6) {
            (true, _) => self.family == "bridge",
            (false, false) => self.family == "ip" || self.family == "inet",
            (false, true) => self.family == "ip6" || self.family == "inet",
        };
        family && self.hooks.iter().any(|h| h == hook)
    }
}

/// The drop rules of one traced namespace over the trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceRules {
    pub netns_name: String,
    pub rules: Vec<DropRule>,
}

/// The drop rules' changes as read at one moment while tracing: a packet netfilter dropped
/// before `started_ns` (the events' clock) is counted in them. The live view names the rule
/// that dropped a packet from the first snapshot started after the drop that read its
/// namespace; a recording keeps the snapshots so that its replay names the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulesSnapshot {
    pub started_ns: u64,
    /// The namespaces read (by inode): those of the drops waiting for it. `None`: every
    /// traced namespace (the read at the end, and recordings made before reads were narrowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Vec<u32>>,
    pub namespaces: Vec<NamespaceRules>,
}

impl RulesSnapshot {
    /// Whether it read the rules of namespace `netns`.
    pub fn covers(&self, netns: u32) -> bool {
        self.read.as_ref().is_none_or(|read| read.contains(&netns))
    }
}

/// Reads the ruleset of the calling thread's network namespace (call it inside
/// `Netns::run`: a child process starts in the namespace of the thread that forks it). Tools
/// that are not installed are skipped: a machine without nft has no nftables rules.
pub fn read() -> Ruleset {
    let mut set = output("nft", &["-a", "list", "ruleset"])
        .map(|text| nft::parse(&text))
        .unwrap_or_default();
    for (tool, family) in [("iptables-nft-save", "ip"), ("ip6tables-nft-save", "ip6")] {
        if let Some(text) = output(tool, &["-c"]) {
            in_iptables_form(
                &mut set,
                xtables::parse(&text, family, RuleSource::Iptables),
            );
        }
    }
    // Legacy tables exist only once something loaded them: reading them must not load them.
    for (names, tool, family) in [
        ("ip_tables_names", "iptables-legacy-save", "ip"),
        ("ip6_tables_names", "ip6tables-legacy-save", "ip6"),
    ] {
        let loaded = std::fs::read_to_string(format!("/proc/thread-self/net/{names}"))
            .is_ok_and(|t| !t.trim().is_empty());
        if loaded {
            if let Some(text) = output(tool, &["-c"]) {
                let legacy = xtables::parse(&text, family, RuleSource::IptablesLegacy);
                set.rules.extend(legacy.rules);
                set.policies.extend(legacy.policies);
            }
        }
    }
    set
}

fn output(tool: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(tool).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Shows iptables-nft's rules as iptables writes them: a chain that `iptables-nft-save` lists
/// with as many rules as nft shows there holds the same rules in the same order.
fn in_iptables_form(set: &mut Ruleset, iptables: Ruleset) {
    let mut by_chain: BTreeMap<(&str, &str, &str), Vec<&Rule>> = BTreeMap::new();
    for rule in &iptables.rules {
        by_chain
            .entry((&rule.family, &rule.table, &rule.chain))
            .or_default()
            .push(rule);
    }
    for ((family, table, chain), saved) in by_chain {
        let mine: Vec<&mut Rule> = set
            .rules
            .iter_mut()
            .filter(|r| r.family == family && r.table == table && r.chain == chain)
            .collect();
        if mine.len() != saved.len() {
            continue;
        }
        for (rule, saved) in mine.into_iter().zip(saved) {
            rule.source = RuleSource::Iptables;
            // `iptables -L --line-numbers` names it by its place, not by nft's handle.
            rule.id = saved.id;
            rule.text = saved.text.clone();
            rule.packets = saved.packets;
        }
    }
    for policy in iptables.policies {
        if let Some(mine) = set.policies.iter_mut().find(|p| {
            p.family == policy.family && p.table == policy.table && p.chain == policy.chain
        }) {
            *mine = policy;
        }
    }
}

/// Whether a rule's verdict drops: `drop`, `reject ...`, `-j DROP`, `-j REJECT ...`.
fn drops(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    words.iter().any(|w| *w == "drop" || *w == "reject")
        || words
            .windows(2)
            .any(|w| w[0] == "-j" && (w[1] == "DROP" || w[1] == "REJECT"))
}

/// The rules and policies that can drop, with how much their counters rose between two reads
/// of one namespace.
pub fn changes(before: &Ruleset, after: &Ruleset) -> Vec<DropRule> {
    // Indexed once: a host with kube-proxy or Docker has thousands of rules, and a scan per
    // rule would be quadratic.
    let mut table_hooks: HashMap<(&str, &str), BTreeSet<&str>> = HashMap::new();
    let base_chains = after
        .rules
        .iter()
        .map(|r| (&r.family, &r.table, &r.hook))
        .chain(
            after
                .policies
                .iter()
                .map(|p| (&p.family, &p.table, &p.hook)),
        );
    for (family, table, hook) in base_chains {
        let hooks = table_hooks.entry((family, table)).or_default();
        hooks.extend(hook.as_deref());
    }
    let hooks = |family: &str, table: &str, hook: &Option<String>| match hook {
        Some(hook) => vec![hook.clone()],
        None => table_hooks
            .get(&(family, table))
            .map(|h| h.iter().map(|h| h.to_string()).collect())
            .unwrap_or_default(),
    };
    let earlier_rules: HashMap<_, Option<u64>> = before
        .rules
        .iter()
        .map(|b| {
            (
                (b.source, &b.family, &b.table, &b.chain, b.id, &b.text),
                b.packets,
            )
        })
        .collect();
    let mut out = Vec::new();
    for rule in after.rules.iter().filter(|r| drops(&r.text)) {
        let key = (
            rule.source,
            &rule.family,
            &rule.table,
            &rule.chain,
            rule.id,
            &rule.text,
        );
        let earlier = earlier_rules.get(&key).copied().flatten();
        out.push(DropRule {
            source: rule.source,
            family: rule.family.clone(),
            table: rule.table.clone(),
            chain: rule.chain.clone(),
            hooks: hooks(&rule.family, &rule.table, &rule.hook),
            id: rule.id,
            text: rule.text.clone(),
            // A rule added during the trace rose from nothing.
            rose: rule.packets.map(|n| n.saturating_sub(earlier.unwrap_or(0))),
        });
    }
    for policy in after.policies.iter().filter(|p| p.policy == "drop") {
        let earlier = before.policies.iter().find(|b| {
            b.family == policy.family && b.table == policy.table && b.chain == policy.chain
        });
        out.push(DropRule {
            source: if policy.packets.is_some() {
                RuleSource::Iptables
            } else {
                RuleSource::Nftables
            },
            family: policy.family.clone(),
            table: policy.table.clone(),
            chain: policy.chain.clone(),
            hooks: hooks(&policy.family, &policy.table, &policy.hook),
            id: 0,
            text: "policy drop".to_string(),
            rose: policy
                .packets
                .map(|n| n.saturating_sub(earlier.and_then(|b| b.packets).unwrap_or(0))),
        });
    }
    out
}

/// What the rules say about a drop at `hook` (nft's hook name).
#[derive(Debug, PartialEq)]
pub enum Attribution<'a> {
    /// The drop rules there whose counters rose during the trace.
    Rose(Vec<&'a DropRule>),
    /// None rose; these drop rules there have no counter to tell.
    Uncounted(Vec<&'a DropRule>),
    /// No drop rule there rose or lacks a counter.
    Nothing,
}

pub fn attribute<'a>(
    rules: &'a [DropRule],
    hook: &str,
    ipv6: bool,
    bridge: bool,
) -> Attribution<'a> {
    let here: Vec<&DropRule> = rules
        .iter()
        .filter(|r| r.meets(hook, ipv6, bridge))
        .collect();
    let rose: Vec<&DropRule> = here.iter().copied().filter(|r| r.rose > Some(0)).collect();
    if !rose.is_empty() {
        return Attribution::Rose(rose);
    }
    let uncounted: Vec<&DropRule> = here.into_iter().filter(|r| r.rose.is_none()).collect();
    if uncounted.is_empty() {
        Attribution::Nothing
    } else {
        Attribution::Uncounted(uncounted)
    }
}

#[cfg(test)]
mod tests;
