//! `nft -a list ruleset`, read as text: it names each rule the way its author wrote it, with
//! its handle, and shows the rules iptables-nft made as well.

use super::{Rule, RuleSource, Ruleset};

/// Parses `nft -a list ruleset`. Rules without a `counter` statement are kept too (with no
/// count): that a drop rule has no counter is worth saying when nothing else can be.
pub fn parse(text: &str) -> Ruleset {
    let mut set = Ruleset::default();
    let mut table: Option<(String, String)> = None;
    let mut chain: Option<String> = None;
    let mut hook: Option<String> = None;
    // Braces open tables, chains, sets, maps and anonymous sets (`{ 80, 443 }`): depth 1 is
    // inside a table, depth 2 inside one of its chains or sets.
    let mut depth = 0usize;
    for line in text.lines() {
        let line = line.trim();
        let at = depth;
        depth = (depth + line.matches('{').count()).saturating_sub(line.matches('}').count());
        if at == 0 {
            if let Some(rest) = line.strip_prefix("table ") {
                let mut words = rest.split_whitespace();
                if let (Some(family), Some(name)) = (words.next(), words.next()) {
                    table = Some((family.to_string(), name.to_string()));
                }
            }
            continue;
        }
        if at == 1 {
            chain = line
                .strip_prefix("chain ")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string);
            hook = None;
            continue;
        }
        if depth < 2 {
            // The line that closes a chain or a set.
            continue;
        }
        let (Some((family, table_name)), Some(chain_name)) = (&table, &chain) else {
            continue;
        };
        if let Some(rest) = line.strip_prefix("type ") {
            hook = words_after(rest, "hook");
            if let Some(policy) = words_after(rest, "policy") {
                let policy = policy.trim_end_matches(';').to_string();
                set.policies.push(super::Policy {
                    family: family.clone(),
                    table: table_name.clone(),
                    chain: chain_name.clone(),
                    hook: hook.clone(),
                    policy,
                    packets: None,
                });
            }
            continue;
        }
        let Some((body, handle)) = line.rsplit_once("# handle ") else {
            continue;
        };
        let Ok(handle) = handle.trim().parse::<u64>() else {
            continue;
        };
        let (text, packets) = without_counter(body.trim());
        set.rules.push(Rule {
            source: RuleSource::Nftables,
            family: family.clone(),
            table: table_name.clone(),
            chain: chain_name.clone(),
            hook: hook.clone(),
            id: handle,
            text,
            packets,
        });
    }
    set
}

/// The word after `key` in a chain's `type filter hook input priority filter; policy drop;`.
fn words_after(text: &str, key: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == key)?;
    words.next().map(|w| w.trim_end_matches(';').to_string())
}

/// The rule without its `counter packets N bytes M` (which changes as packets pass), and N.
fn without_counter(body: &str) -> (String, Option<u64>) {
    let words: Vec<&str> = body.split_whitespace().collect();
    let Some(at) = words
        .windows(5)
        .position(|w| w[0] == "counter" && w[1] == "packets" && w[3] == "bytes")
    else {
        return (words.join(" "), None);
    };
    let packets = words[at + 2].parse().ok();
    let text: Vec<&str> = words[..at]
        .iter()
        .chain(&words[at + 5..])
        .copied()
        .collect();
    (text.join(" "), packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULESET: &str = "table ip filter { # handle 1
	chain INPUT { # handle 1
		type filter hook input priority filter; policy accept;
		tcp flags syn / fin,syn,rst,ack tcp dport 8080 counter packets 3 bytes 180 drop # handle 2
	}

	chain DOCKER-USER { # handle 3
		tcp dport 80 counter packets 0 bytes 0 drop # handle 6
	}
}
table inet filter { # handle 3
	set blocked { # handle 4
		type ipv4_addr
		elements = { 10.0.0.1 }
	}

	chain input { # handle 1
		type filter hook input priority filter; policy drop;
		tcp dport 9090 counter packets 7 bytes 420 drop # handle 2
		udp dport 53 drop # handle 3
	}
}
";

    #[test]
    fn rules_are_read_with_their_chain_hook_handle_and_count() {
        let set = parse(RULESET);
        let summary: Vec<_> = set
            .rules
            .iter()
            .map(|r| {
                (
                    r.family.as_str(),
                    r.table.as_str(),
                    r.chain.as_str(),
                    r.hook.as_deref(),
                    r.id,
                    r.text.as_str(),
                    r.packets,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "ip",
                    "filter",
                    "INPUT",
                    Some("input"),
                    2,
                    "tcp flags syn / fin,syn,rst,ack tcp dport 8080 drop",
                    Some(3)
                ),
                (
                    "ip",
                    "filter",
                    "DOCKER-USER",
                    None,
                    6,
                    "tcp dport 80 drop",
                    Some(0)
                ),
                (
                    "inet",
                    "filter",
                    "input",
                    Some("input"),
                    2,
                    "tcp dport 9090 drop",
                    Some(7)
                ),
                (
                    "inet",
                    "filter",
                    "input",
                    Some("input"),
                    3,
                    "udp dport 53 drop",
                    None
                ),
            ]
        );
        let policies: Vec<_> = set
            .policies
            .iter()
            .map(|p| (p.chain.as_str(), p.policy.as_str()))
            .collect();
        assert_eq!(policies, [("INPUT", "accept"), ("input", "drop")]);
    }

    #[test]
    fn an_empty_ruleset_has_no_rules() {
        assert_eq!(parse(""), Ruleset::default());
    }
}
