use super::*;

fn ruleset(input_drops: u64, forward_drops: Option<u64>) -> Ruleset {
    let mut text = format!(
        "table ip filter {{ # handle 1
	chain INPUT {{ # handle 1
		type filter hook input priority filter; policy accept;
		tcp dport 8080 counter packets {input_drops} bytes 0 drop # handle 2
		counter packets 90 bytes 0 accept # handle 3
	}}
	chain DOCKER-USER {{ # handle 4
		tcp dport 80 counter packets 0 bytes 0 drop # handle 5
	}}
	chain FORWARD {{ # handle 6
		type filter hook forward priority filter; policy accept;
		counter packets 12 bytes 0 jump DOCKER-USER # handle 7
	}}
}}
table inet filter {{ # handle 2
	chain fwd {{ # handle 1
		type filter hook forward priority filter; policy drop;
"
    );
    match forward_drops {
        Some(n) => text.push_str(&format!(
            "\t\tudp dport 53 counter packets {n} bytes 0 drop # handle 2\n"
        )),
        None => text.push_str("\t\tudp dport 53 drop # handle 2\n"),
    }
    text.push_str("\t}\n}\n");
    nft::parse(&text)
}

#[test]
fn the_rule_whose_counter_rose_at_the_hook_is_named() {
    let rules = changes(&ruleset(1, Some(0)), &ruleset(4, Some(0)));
    let Attribution::Rose(rose) = attribute(&rules, "input", false, false) else {
        panic!("no rule rose: {rules:?}");
    };
    assert_eq!(rose.len(), 1);
    assert_eq!(rose[0].text, "tcp dport 8080 drop");
    assert_eq!(rose[0].rose, Some(3));
    assert_eq!(
        rose[0].place(),
        "nftables table ip filter, chain INPUT, handle 2"
    );
    // The same counter says nothing about IPv6 packets, nor about another hook.
    assert_eq!(
        attribute(&rules, "input", true, false),
        Attribution::Nothing
    );
    assert_eq!(
        attribute(&rules, "output", false, false),
        Attribution::Nothing
    );
}

#[test]
fn accept_and_jump_rules_are_never_culprits() {
    let rules = changes(&ruleset(0, Some(0)), &ruleset(0, Some(0)));
    assert!(rules.iter().all(|r| r.text.contains("drop")), "{rules:?}");
}

#[test]
fn a_chain_rules_jump_to_is_met_at_its_tables_hooks() {
    let rules = changes(&ruleset(0, Some(0)), &ruleset(0, Some(0)));
    let docker_user = rules.iter().find(|r| r.chain == "DOCKER-USER").unwrap();
    assert_eq!(docker_user.hooks, ["forward", "input"]);
}

#[test]
fn rules_without_counters_and_uncounted_policies_are_said_when_nothing_rose() {
    let rules = changes(&ruleset(0, None), &ruleset(0, None));
    let Attribution::Uncounted(uncounted) = attribute(&rules, "forward", false, false) else {
        panic!("expected uncounted rules: {rules:?}");
    };
    let texts: Vec<&str> = uncounted.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(texts, ["udp dport 53 drop", "policy drop"]);
}

#[test]
fn iptables_nft_rules_are_shown_in_iptables_form_with_its_policy_counts() {
    let mut set = ruleset(2, Some(0));
    let saved = "*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [5:300]
:DOCKER-USER - [0:0]
[2:120] -A INPUT -p tcp -m tcp --dport 8080 -j DROP
[90:0] -A INPUT -j ACCEPT
[12:0] -A FORWARD -j DOCKER-USER
[0:0] -A DOCKER-USER -p tcp -m tcp --dport 80 -j DROP
COMMIT
";
    in_iptables_form(&mut set, xtables::parse(saved, "ip", RuleSource::Iptables));
    let input = &set.rules[0];
    assert_eq!(input.source, RuleSource::Iptables);
    assert_eq!(input.text, "-A INPUT -p tcp -m tcp --dport 8080 -j DROP");
    assert_eq!(
        input.id, 1,
        "named by its place in the chain, as iptables does"
    );
    let before = set.clone();
    let mut after = set;
    after
        .policies
        .iter_mut()
        .find(|p| p.chain == "FORWARD")
        .unwrap()
        .packets = Some(9);
    let rules = changes(&before, &after);
    let Attribution::Rose(rose) = attribute(&rules, "forward", false, false) else {
        panic!("the policy's count rose: {rules:?}");
    };
    assert_eq!(rose[0].text, "policy drop");
    assert_eq!(rose[0].rose, Some(4));
    assert_eq!(rose[0].place(), "iptables table ip filter, chain FORWARD");
}

#[test]
fn bridge_drops_meet_only_bridge_family_rules() {
    let text = "table bridge f { # handle 9
	chain fwd { # handle 1
		type filter hook forward priority filter; policy accept;
		tcp dport 80 counter packets 3 bytes 0 drop # handle 2
	}
}
";
    let rules = changes(&Ruleset::default(), &nft::parse(text));
    assert!(
        matches!(attribute(&rules, "forward", false, true), Attribution::Rose(r) if r.len() == 1)
    );
    assert_eq!(
        attribute(&rules, "forward", false, false),
        Attribution::Nothing
    );
}
