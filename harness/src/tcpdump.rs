//! A real tcpdump writing a capture file inside a namespace: what a person would have
//! captured, the oracle the tracer is compared with.

use std::{
    io::{BufRead, BufReader, Read},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, ChildStderr, Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// `tcpdump -i IFNAME OPTIONS... -w FILE FILTER` running inside a namespace; killed and its
/// file removed on drop.
pub struct Tcpdump {
    child: Child,
    file: PathBuf,
    stderr: BufReader<ChildStderr>,
}

impl Tcpdump {
    /// Starts `ip netns exec NETNS tcpdump -i IFNAME OPTIONS... -w FILE FILTER...` and waits
    /// until it says it is listening (its socket bound and filtered).
    pub fn start(
        netns: &str,
        ifname: &str,
        options: &[&str],
        file: PathBuf,
        filter: &str,
    ) -> Result<Tcpdump> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns, "tcpdump", "-i", ifname])
            .args(options)
            .arg("-w")
            .arg(&file)
            .args(filter.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // A caller may block SIGINT and SIGTERM to clean up on them (a lab does); tcpdump must
        // not inherit that, or SIGINT could never stop it.
        // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
        // calls are allowed: it allocates nothing, a zeroed `sigset_t` is a valid value, and
        // sigemptyset, sigaddset and pthread_sigmask are async-signal-safe (POSIX).
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
        let mut stderr = BufReader::new(child.stderr.take().context("tcpdump's stderr")?);
        let mut first = String::new();
        let read = stderr.read_line(&mut first);
        let tcpdump = Tcpdump {
            child,
            file,
            stderr,
        };
        read.context("tcpdump's stderr")?;
        if !first.contains("listening on") {
            bail!("tcpdump did not start: {}", first.trim());
        }
        Ok(tcpdump)
    }

    /// Where it writes.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// tcpdump's process id (`ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the capture with SIGINT, which lets tcpdump flush and close its file; returns
    /// what it said on the way out ("N packets captured", "M packets dropped by kernel").
    pub fn stop(&mut self) -> Result<String> {
        crate::process::interrupt(&mut self.child)?;
        let mut rest = String::new();
        self.stderr
            .read_to_string(&mut rest)
            .context("tcpdump's stderr")?;
        Ok(rest)
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}
