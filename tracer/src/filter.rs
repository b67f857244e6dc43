//! The in-kernel filter. For now a small subset of tcpdump's language: `host ADDR`,
//! `net ADDR/LEN`, `port N`, `tcp`, `udp`, `icmp`, `icmp6`, joined by `and`. Anything else is refused with a sentence,
//! never silently widened.

use std::net::IpAddr;

use tracer_common::config::TraceConfig;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    #[error("unsupported filter expression near '{0}' (supported: host ADDR, net ADDR/LEN, port N, tcp, udp, icmp, icmp6, joined by 'and')")]
    Unsupported(String),
    #[error("'{0}' is not an IP address")]
    BadAddress(String),
    #[error("'{0}' is not a network (ADDR/LEN, e.g. 10.0.0.0/8)")]
    BadNetwork(String),
    #[error("'{0}' is not a port number")]
    BadPort(String),
    #[error("the filter names two different {0}s; only one is supported")]
    Twice(&'static str),
}

pub fn parse(words: &[String]) -> Result<TraceConfig, FilterError> {
    let mut config = TraceConfig::default();
    let tokens: Vec<&str> = words.iter().flat_map(|w| w.split_whitespace()).collect();
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        let operand = tokens.get(i + 1).copied();
        match (token, operand) {
            ("and" | "&&", _) if i > 0 => {}
            ("host" | "net", Some(operand)) => {
                if config.addr_family != 0 {
                    return Err(FilterError::Twice("host or net"));
                }
                let (addr, prefix) = if token == "host" {
                    let addr = operand
                        .parse::<IpAddr>()
                        .map_err(|_| FilterError::BadAddress(operand.into()))?;
                    (addr, if addr.is_ipv4() { 32 } else { 128 })
                } else {
                    parse_network(operand)?
                };
                match addr {
                    IpAddr::V4(v4) => {
                        config.addr[..4].copy_from_slice(&v4.octets());
                        config.addr_family = 4;
                    }
                    IpAddr::V6(v6) => {
                        config.addr = v6.octets();
                        config.addr_family = 6;
                    }
                }
                config.addr_prefix = prefix;
                i += 1;
            }
            ("port", Some(port)) => {
                if config.port != 0 {
                    return Err(FilterError::Twice("port"));
                }
                config.port = port
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| FilterError::BadPort(port.into()))?;
                i += 1;
            }
            ("tcp" | "udp" | "icmp" | "icmp6", _) => {
                if config.l4_proto != 0 {
                    return Err(FilterError::Twice("protocol"));
                }
                config.l4_proto = match token {
                    "tcp" => 6,
                    "udp" => 17,
                    "icmp" => 1,
                    _ => 58,
                };
            }
            _ => return Err(FilterError::Unsupported(token.into())),
        }
        i += 1;
    }
    Ok(config)
}

/// `ADDR/LEN` with LEN within the family's width, host bits zero (as tcpdump demands).
fn parse_network(operand: &str) -> Result<(IpAddr, u8), FilterError> {
    let bad = || FilterError::BadNetwork(operand.into());
    let (addr, len) = operand.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let (bits, width) = match addr {
        IpAddr::V4(v4) => (u32::from(v4) as u128, 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    if len > width || (len < width && bits & ((1u128 << (width - len)) - 1) != 0) {
        return Err(bad());
    }
    Ok((addr, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        vec![s.to_string()]
    }

    #[test]
    fn host_port_and_protocol_combine() {
        let config = parse(&words("tcp and host 10.1.2.3 and port 80")).unwrap();
        assert_eq!(config.l4_proto, 6);
        assert_eq!(config.addr_family, 4);
        assert_eq!(&config.addr[..4], &[10, 1, 2, 3]);
        assert_eq!(config.port, 80);
        assert_eq!(config.addr_prefix, 32);
    }

    #[test]
    fn networks_carry_their_prefix_length() {
        let config = parse(&words("net 10.200.0.0/16")).unwrap();
        assert_eq!((config.addr_family, config.addr_prefix), (4, 16));
        assert_eq!(&config.addr[..4], &[10, 200, 0, 0]);
        let config = parse(&words("net fd00::/8")).unwrap();
        assert_eq!((config.addr_family, config.addr_prefix), (6, 8));
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "10.0.0.0", "nope/8"] {
            assert_eq!(
                parse(&words(&format!("net {bad}"))),
                Err(FilterError::BadNetwork(bad.into()))
            );
        }
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert_eq!(parse(&[]).unwrap(), TraceConfig::default());
    }

    #[test]
    fn unsupported_words_are_refused() {
        assert_eq!(
            parse(&words("portrange 1-2")),
            Err(FilterError::Unsupported("portrange".into()))
        );
        assert_eq!(
            parse(&words("or")),
            Err(FilterError::Unsupported("or".into()))
        );
        assert_eq!(
            parse(&words("host nope")),
            Err(FilterError::BadAddress("nope".into()))
        );
        assert_eq!(
            parse(&words("port 70000")),
            Err(FilterError::BadPort("70000".into()))
        );
    }
}
