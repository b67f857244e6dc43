//! A TCP header's flags as the kernel gave them: one byte, named only where a person or the
//! JSON contract reads them (`["SYN", "ACK"]`, in this order).

use std::fmt;

use serde::{de, ser::SerializeSeq, Deserialize, Deserializer, Serialize, Serializer};
use tracer_common::event::tcp_flag;

/// Names in the order the JSON contract lists them.
const NAMES: [(u8, &str); 8] = [
    (tcp_flag::SYN, "SYN"),
    (tcp_flag::ACK, "ACK"),
    (tcp_flag::FIN, "FIN"),
    (tcp_flag::RST, "RST"),
    (tcp_flag::PSH, "PSH"),
    (tcp_flag::URG, "URG"),
    (tcp_flag::ECE, "ECE"),
    (tcp_flag::CWR, "CWR"),
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// The flags named (`"SYN"`, ...); `None` if a name is not a TCP flag.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Option<TcpFlags> {
        names.iter().try_fold(TcpFlags(0), |flags, name| {
            let bit = NAMES.iter().find(|(_, n)| *n == name.as_ref())?.0;
            Some(TcpFlags(flags.0 | bit))
        })
    }

    pub fn names(self) -> impl Iterator<Item = &'static str> + Clone {
        NAMES
            .into_iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| name)
    }

    /// Whether the flag named `name` is set.
    pub fn has(self, name: &str) -> bool {
        self.names().any(|n| n == name)
    }
}

/// Exactly these flags, in any order: `flags == ["SYN", "ACK"]`.
impl<const N: usize> PartialEq<[&str; N]> for TcpFlags {
    fn eq(&self, names: &[&str; N]) -> bool {
        TcpFlags::from_names(names) == Some(*self)
    }
}

impl PartialEq<&[&str]> for TcpFlags {
    fn eq(&self, names: &&[&str]) -> bool {
        TcpFlags::from_names(names) == Some(*self)
    }
}

impl Serialize for TcpFlags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.count_ones() as usize))?;
        for name in self.names() {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for TcpFlags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TcpFlags, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        TcpFlags::from_names(&names)
            .ok_or_else(|| de::Error::custom(format_args!("not TCP flags: {names:?}")))
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.names().collect();
        f.write_str(&names.join("-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_named_in_the_contracts_order_and_read_back() {
        let flags = TcpFlags(tcp_flag::ACK | tcp_flag::SYN | tcp_flag::PSH);
        assert_eq!(flags.names().collect::<Vec<_>>(), ["SYN", "ACK", "PSH"]);
        let json = serde_json::to_string(&flags).unwrap();
        assert_eq!(json, r#"["SYN","ACK","PSH"]"#);
        assert_eq!(serde_json::from_str::<TcpFlags>(&json).unwrap(), flags);
        assert!(flags == ["PSH", "SYN", "ACK"] && flags != ["SYN", "ACK"]);
        assert!(flags.has("PSH") && !flags.has("RST"));
        assert!(serde_json::from_str::<TcpFlags>(r#"["SYN","NOPE"]"#).is_err());
        assert_eq!(TcpFlags::default().names().count(), 0);
    }
}
