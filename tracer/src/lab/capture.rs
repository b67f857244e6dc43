//! A real tcpdump beside the tracer: what a user would have captured.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context, Result};

pub struct Tcpdump {
    child: Child,
    file: PathBuf,
}

impl Tcpdump {
    /// Starts `tcpdump -i IFACE -w FILE` inside `netns` and waits until it is capturing.
    pub fn start(netns: &str, ifname: &str, filter: &str) -> Result<Tcpdump> {
        let file =
            std::env::temp_dir().join(format!("tracer-lab-{}-{ifname}.pcap", std::process::id()));
        let mut child = Command::new("ip")
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
            .stderr(Stdio::piped())
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

    /// Stops the capture and returns tcpdump's own lines for what it captured.
    pub fn stop(mut self) -> Result<Vec<String>> {
        // SIGINT lets tcpdump flush and close the file.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait()?;
        let out = Command::new("tcpdump")
            .args(["-n", "-tt", "-r"])
            .arg(&self.file)
            .stderr(Stdio::null())
            .output()?;
        let _ = std::fs::remove_file(&self.file);
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}
