//! A real tcpdump beside the tracer: what a user would have captured.

use anyhow::{Context, Result};
use tracer_common::{
    event::Event,
    parse::{parse_l2, parse_l3, HDR_LEN, L2_LEN},
};

use crate::model::sighting::{Names, Sighting};

pub struct Tcpdump(harness::tcpdump::Tcpdump);

impl Tcpdump {
    /// Starts `tcpdump -i IFACE -w FILE` inside `netns` and waits until it is capturing.
    pub fn start(netns: &str, ifname: &str, filter: &str) -> Result<Tcpdump> {
        let file =
            std::env::temp_dir().join(format!("{netns}-{}-{ifname}.pcap", std::process::id()));
        // --immediate-mode: with TPACKET_V3 blocks, a capture stopped by SIGINT can lose the
        // packets of its last, unfinished block.
        let options = ["--immediate-mode", "-U", "-n"];
        harness::tcpdump::Tcpdump::start(netns, ifname, &options, file, filter).map(Tcpdump)
    }

    /// Stops the capture: tcpdump's lines, and the captured packets' headers.
    pub fn stop_with_packets(mut self) -> Result<(Vec<String>, Vec<Sighting>)> {
        self.0.stop()?;
        let out = std::process::Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(self.0.file())
            .stderr(std::process::Stdio::null())
            .output()?;
        let bytes = std::fs::read(self.0.file()).context("reading tcpdump's file")?;
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        Ok((lines, pcap_packets(&bytes)))
    }
}

/// The headers of each packet of a pcap file of Ethernet frames, parsed as the kernel
/// programs parse them, so that they compare with the tracer's sightings.
pub fn pcap_packets(file: &[u8]) -> Vec<Sighting> {
    let mut out = Vec::new();
    let word = |at: usize| {
        file.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if word(20) != Some(1) {
        return out; // not Ethernet (or not a little-endian pcap file)
    }
    let mut at = 24;
    while let (Some(caplen), Some(len)) = (word(at + 8), word(at + 12)) {
        let start = at + 16;
        let Some(frame) = file.get(start..start + caplen as usize) else {
            break;
        };
        at = start + caplen as usize;
        let mut eth = [0u8; L2_LEN];
        let n = frame.len().min(L2_LEN);
        eth[..n].copy_from_slice(&frame[..n]);
        let Some((l3_offset, l3_proto, vlan)) = parse_l2(&eth, n) else {
            continue;
        };
        let mut l3 = [0u8; HDR_LEN];
        let rest = &frame[l3_offset.min(frame.len())..];
        let valid = rest.len().min(HDR_LEN);
        l3[..valid].copy_from_slice(&rest[..valid]);
        let mut event = Event::default();
        // Only the headers are read from this sighting; any hook does.
        event.header.hook = tracer_common::hook::Hook::NetifReceive as u8;
        event.packet.vlan = vlan;
        event.packet.pkt_len = len;
        parse_l3(&l3, valid, l3_proto, &mut event.packet);
        out.extend(Sighting::decode(&event, &Names::default()));
    }
    out
}
