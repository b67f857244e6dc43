//! Which rule dropped a packet, from the counters of the traced namespace's drop rules (see
//! [`crate::kernel::rules`]): said only for a netfilter drop, only from counters that moved.

use crate::{
    analysis::fate::FateKind,
    analysis::journey::Journey,
    kernel::rules::{attribute, Attribution, DropRule, NamespaceRules},
};

/// nft's name of the hook a netfilter point observes (`nf_local_in` -> `input`), and whether it
/// is a bridge hook.
fn nft_hook(point: &str) -> Option<(&'static str, bool)> {
    let (name, bridge) = match point.strip_prefix("br_") {
        Some(rest) => (rest, true),
        None => (point.strip_prefix("nf_")?, false),
    };
    let hook = match name {
        "prerouting" => "prerouting",
        "local_in" => "input",
        "forward" => "forward",
        "local_out" => "output",
        "postrouting" => "postrouting",
        _ => return None,
    };
    Some((hook, bridge))
}

/// `INPUT`, as iptables users name the hook.
fn hook_words(hook: &str) -> String {
    hook.to_uppercase()
}

fn rule_words(rule: &DropRule) -> String {
    format!("`{}` ({})", rule.text, rule.place())
}

/// What the rules of its namespace say about a netfilter drop: `(hook, namespace, attribution)`.
fn attribution<'a>(
    journey: &Journey,
    rules: &'a [NamespaceRules],
) -> Option<(&'static str, &'a str, Attribution<'a>)> {
    let fate = &journey.fate;
    if fate.kind != FateKind::Dropped || fate.drop_reason() != Some("NETFILTER_DROP") {
        return None;
    }
    let ns = fate.netns_name.as_deref()?;
    let here = rules.iter().find(|r| r.netns_name == ns)?;
    let (hook, bridge) = nft_hook(fate.hook?.name())?;
    let ipv6 = journey.headers().src.is_some_and(|a| a.is_ipv6());
    Some((
        hook,
        &here.netns_name,
        attribute(&here.rules, hook, ipv6, bridge),
    ))
}

/// The rules whose counters rose at the hook where netfilter dropped `journey`.
pub fn culprits<'a>(journey: &Journey, rules: &'a [NamespaceRules]) -> Vec<&'a DropRule> {
    match attribution(journey, rules) {
        Some((_, _, Attribution::Rose(rose))) => rose,
        _ => Vec::new(),
    }
}

/// The rules that dropped `journey` in a few words, for its one-line view: ``by `-A INPUT
/// -j DROP` (iptables table ip filter, chain INPUT, rule 1)``.
pub fn rule_words_short(journey: &Journey, rules: &[NamespaceRules]) -> Option<String> {
    let rose = culprits(journey, rules);
    let words: Vec<String> = rose.iter().map(|r| rule_words(r)).collect();
    match words.len() {
        0 => None,
        1 => Some(format!("by {}", words[0])),
        _ => Some(format!("by one of {}", words.join(", "))),
    }
}

/// The sentence naming the rule that dropped `journey`, if it was dropped by netfilter and the
/// rules of its namespace were read.
pub fn rule_sentence(journey: &Journey, rules: &[NamespaceRules]) -> Option<String> {
    let (hook, ns, attribution) = attribution(journey, rules)?;
    let at = hook_words(hook);
    Some(match attribution {
        Attribution::Rose(rose) if rose.len() == 1 => format!(
            "The rule that dropped it: {}; its counter rose by {} during the trace.",
            rule_words(rose[0]),
            rose[0].rose.unwrap_or(0)
        ),
        Attribution::Rose(rose) => {
            let list: Vec<String> = rose
                .iter()
                .map(|r| format!("{} +{}", rule_words(r), r.rose.unwrap_or(0)))
                .collect();
            format!(
                "The drop rules at {at} in {ns} whose counters rose during the trace: {}.",
                list.join("; ")
            )
        }
        Attribution::Uncounted(uncounted) => {
            let list: Vec<String> = uncounted.iter().map(|r| rule_words(r)).collect();
            format!(
                "No drop rule at {at} in {ns} has a counter that rose; these can drop there but \
                 count nothing (add `counter` to an nftables rule to see it count): {}.",
                list.join("; ")
            )
        }
        Attribution::Nothing => format!(
            "No drop rule or policy at {at} in {ns} counted a packet during the trace: \
             conntrack or another netfilter module may have dropped it."
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netfilter_and_bridge_points_are_named_as_nft_hooks() {
        assert_eq!(nft_hook("nf_local_in"), Some(("input", false)));
        assert_eq!(nft_hook("nf_postrouting"), Some(("postrouting", false)));
        assert_eq!(nft_hook("br_forward"), Some(("forward", true)));
        assert_eq!(nft_hook("tc_ingress"), None);
    }
}
