//! Reading pcapng files back with tshark: what Wireshark users will see.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// One frame as tshark decodes it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub interface: String,
    pub cap_len: u32,
    pub len: u32,
    pub comments: Vec<String>,
    pub xdp_verdict: Option<u64>,
    pub tc_verdict: Option<i64>,
    /// Set when the frame starts with an Ethernet header.
    pub ethertype: Option<String>,
    pub udp_dport: Option<u16>,
}

const FIELDS: [&str; 8] = [
    "frame.interface_name",
    "frame.cap_len",
    "frame.len",
    "frame.comment",
    "frame.verdict.ebpf_xdp",
    "frame.verdict.ebpf_tc",
    "eth.type",
    "udp.dstport",
];

impl Frame {
    fn parse(line: &str) -> Frame {
        let f: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or_default();
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Frame {
            interface: get(0).to_string(),
            cap_len: get(1).parse().unwrap_or(0),
            len: get(2).parse().unwrap_or(0),
            comments: get(3)
                .split('|')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            xdp_verdict: get(4).parse().ok(),
            tc_verdict: get(5).parse().ok(),
            ethertype: some(get(6)),
            // An ICMP error quotes a UDP header: the first one is the packet's own.
            udp_dport: get(7).split('|').next().and_then(|p| p.parse().ok()),
        }
    }
}

/// Every frame of `file`; fails if tshark cannot read it.
pub fn frames(file: &Path) -> Vec<Frame> {
    let mut command = Command::new("tshark");
    command.arg("-r").arg(file).args([
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
    ]);
    for field in FIELDS {
        command.args(["-e", field]);
    }
    let out = command.output().expect("cannot run tshark");
    assert!(
        out.status.success(),
        "tshark cannot read {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(Frame::parse)
        .collect()
}

/// The frames of `file` on the named interface blocks, in a file of their own.
pub fn select(file: &Path, interfaces: &[String]) -> PathBuf {
    let out = crate::scratch("selected.pcapng");
    let filter: Vec<String> = interfaces
        .iter()
        .map(|i| format!("frame.interface_name == \"{i}\""))
        .collect();
    let status = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-Y", &filter.join(" || "), "-w"])
        .arg(&out)
        .status()
        .expect("cannot run tshark");
    assert!(status.success(), "tshark could not select frames");
    out
}
