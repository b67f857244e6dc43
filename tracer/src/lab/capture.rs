//! A real tcpdump beside the tracer: what a user would have captured.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context, Result};
use tracer_common::{
    event::Event,
    parse::{parse_l2, parse_l3, HDR_LEN, L2_LEN},
};

use crate::model::sighting::{Names, Sighting};

pub struct Tcpdump {
    child: Child,
    file: PathBuf,
}

impl Tcpdump {
    /// Starts `tcpdump -i IFACE -w FILE` inside `netns` and waits until it is capturing.
    pub fn start(netns: &str, ifname: &str, filter: &str) -> Result<Tcpdump> {
        let file =
            std::env::temp_dir().join(format!("{netns}-{}-{ifname}.pcap", std::process::id()));
        let mut command = Command::new("ip");
        command
            // --immediate-mode: with TPACKET_V3 blocks, a capture stopped by SIGINT can lose
            // the packets of its last, unfinished block.
            .args([
                "netns",
                "exec",
                netns,
                "tcpdump",
                "-i",
                ifname,
                "--immediate-mode",
                "-U",
                "-n",
                "-w",
            ])
            .arg(&file)
            .args(filter.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: pthread_sigmask is async-signal-safe. A lab blocks SIGINT and SIGTERM to
        // clean up on them; tcpdump must not inherit that, or it could never be stopped.
        unsafe {
            command.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGINT);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                Ok(())
            })
        };
        let mut child = command
            .spawn()
            .context("cannot start tcpdump (is it installed? `cargo xtask setup`)")?;
        let stderr = child.stderr.take().context("tcpdump stderr")?;
        let mut first = String::new();
        BufReader::new(stderr).read_line(&mut first)?;
        if !first.contains("listening on") {
            let _ = child.kill();
            bail!("tcpdump did not start: {}", first.trim());
        }
        Ok(Tcpdump { child, file })
    }

    /// Stops the capture: tcpdump's lines, and the captured packets' headers.
    pub fn stop_with_packets(mut self) -> Result<(Vec<String>, Vec<Sighting>)> {
        // SIGINT lets tcpdump flush and close the file.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait()?;
        let out = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&self.file)
            .stderr(Stdio::null())
            .output()?;
        let bytes = std::fs::read(&self.file).context("reading tcpdump's file")?;
        let _ = std::fs::remove_file(&self.file);
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

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}
