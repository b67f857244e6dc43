//! One qemu run: boots a kernel with the initramfs, streams the serial console into a log
//! (and optionally to stderr), watches for init.sh's markers and kills qemu on a timeout.
//!
//! Software emulation only (`-accel tcg`): the project's machines have a /dev/kvm backed by
//! a paravirtual hypervisor on which `-accel kvm` cannot boot a stock kernel.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::kernel::Kernel;
use crate::cmd;
use harness::KillOnDrop;

const QBOOT: &str = "/usr/share/qemu/qboot.rom";
/// How long qemu may take to power off after the command's exit marker.
const POWEROFF_GRACE: Duration = Duration::from_secs(15);

pub struct Boot<'a> {
    pub kernel: &'a Kernel,
    pub initrd: &'a Path,
    /// Host directory shared writable with the guest (mounted at the same path there).
    pub out: &'a Path,
    pub log: &'a Path,
    pub timeout: Duration,
    /// Copy the console to stderr as it arrives.
    pub echo: bool,
}

/// What the console said.
#[derive(Default)]
pub struct Console {
    pub text: String,
    /// From qemu's start to init.sh's READY marker, and its `uname -r`.
    pub ready: Option<(Duration, String)>,
    /// The command's exit status and when it arrived (from qemu's start).
    pub exit: Option<(i32, Duration)>,
    /// init.sh's own failure (`XTASK-VM-ERROR=`).
    pub error: Option<String>,
    pub timed_out: bool,
}

pub fn boot(boot: &Boot) -> Result<Console> {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048"])
        // -nic none: no default e1000 and user-mode network; guests use only their namespaces.
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(boot.kernel.image())
        .arg("-initrd")
        .arg(boot.initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        // multidevs=remap: / spans several host filesystems, whose inode numbers would
        // otherwise collide in the guest.
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=vmout,security_model=none,multidevs=remap",
            boot.out.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // qboot (from qemu-system-data) starts a -kernel about 1.5 s sooner than SeaBIOS and
    // prints no screen-control sequences onto the console.
    if Path::new(QBOOT).exists() {
        qemu.args(["-bios", QBOOT]);
    }
    eprintln!("+ {}", cmd::display(&qemu));
    let start = Instant::now();
    let mut child = qemu.spawn().context("cannot start qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel();
    forward(child.stdout.take().expect("piped"), "", tx.clone());
    forward(child.stderr.take().expect("piped"), "qemu: ", tx);
    let mut child = KillOnDrop(child);

    let mut log =
        File::create(boot.log).with_context(|| format!("cannot create {}", boot.log.display()))?;
    let mut console = Console::default();
    let mut deadline = start + boot.timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => break, // qemu closed its output: gone
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // After the exit marker only the power-off was late: the result stands.
                console.timed_out = console.exit.is_none();
                let _ = child.0.kill();
                break;
            }
        };
        writeln!(log, "{line}")?;
        if boot.echo {
            eprintln!("{line}");
        }
        if let Some(rest) = marker(&line, "XTASK-VM-READY kernel=") {
            let kernel = rest.split_whitespace().next().unwrap_or_default();
            console.ready = Some((start.elapsed(), kernel.to_string()));
        } else if let Some(rest) = marker(&line, "XTASK-VM-EXIT=") {
            if let Ok(status) = rest.trim().parse() {
                console.exit = Some((status, start.elapsed()));
                deadline = deadline.min(Instant::now() + POWEROFF_GRACE);
            }
        } else if let Some(rest) = marker(&line, "XTASK-VM-ERROR=") {
            console.error = Some(rest.trim().to_string());
            deadline = deadline.min(Instant::now() + POWEROFF_GRACE);
        }
        console.text.push_str(&line);
        console.text.push('\n');
    }
    let _ = child.0.wait();
    Ok(console)
}

/// The text after `tag` if the line holds it (kernel messages may precede it on the line).
fn marker<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    line.find(tag).map(|at| &line[at + tag.len()..])
}

/// Sends each line of `from` (without CR: the serial console ends lines with CRLF), prefixed,
/// until end of file. Lines are bytes first: a command may print invalid UTF-8.
fn forward(from: impl Read + Send + 'static, prefix: &'static str, to: mpsc::Sender<String>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&buf);
            let line = text.trim_end_matches(['\n', '\r']).replace('\r', "");
            if to.send(format!("{prefix}{line}")).is_err() {
                break;
            }
            buf.clear();
        }
    });
}
