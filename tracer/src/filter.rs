//! The in-kernel filter. For now a small subset of tcpdump's language: `host ADDR`, `port N`,
//! `tcp`, `udp`, `icmp`, `icmp6`, joined by `and`. Anything else is refused with a sentence,
//! never silently widened.

use std::net::IpAddr;

use tracer_common::config::TraceConfig;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    #[error("unsupported filter expression near '{0}' (supported: host ADDR, port N, tcp, udp, icmp, icmp6, joined by 'and')")]
    Unsupported(String),
    #[error("'{0}' is not an IP address")]
    BadAddress(String),
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
            ("host", Some(addr)) => {
                if config.addr_family != 0 {
                    return Err(FilterError::Twice("host"));
                }
                match addr
                    .parse::<IpAddr>()
                    .map_err(|_| FilterError::BadAddress(addr.into()))?
                {
                    IpAddr::V4(v4) => {
                        config.addr[..4].copy_from_slice(&v4.octets());
                        config.addr_family = 4;
                    }
                    IpAddr::V6(v6) => {
                        config.addr = v6.octets();
                        config.addr_family = 6;
                    }
                }
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
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert_eq!(parse(&[]).unwrap(), TraceConfig::default());
    }

    #[test]
    fn unsupported_words_are_refused() {
        assert_eq!(
            parse(&words("net 10.0.0.0/8")),
            Err(FilterError::Unsupported("net".into()))
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
