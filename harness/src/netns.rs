//! Named network namespaces (`ip netns add`) that are deleted when dropped, and code run on a
//! thread inside one (the sockets it opens live there).

use std::{fs::File, os::fd::AsRawFd, path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::command::{command_in, quiet, sh};

/// Where `ip netns add` puts its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A named network namespace with its loopback up, deleted on drop (unless kept).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates `name`, deleting a leftover of the same name first (a run killed earlier).
    pub fn create(name: &str) -> Result<Netns> {
        let _ = quiet(&format!("ip netns del {name}"));
        sh(&format!("ip netns add {name}"))?;
        let netns = Netns {
            name: name.to_string(),
        };
        sh(&format!("ip -n {name} link set lo up"))?;
        Ok(netns)
    }

    /// Runs a command line inside this namespace; its stdout.
    pub fn sh(&self, line: &str) -> Result<String> {
        sh(&format!("ip netns exec {} {line}", self.name))
    }

    /// A command line inside this namespace, to run as the caller likes.
    pub fn command(&self, line: &str) -> Command {
        command_in(&self.name, line)
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        in_netns(&self.name, f)
    }

    /// Leaves the namespace in place after this value is gone; its name.
    pub fn keep(mut self) -> String {
        std::mem::take(&mut self.name)
    }

    /// Deletes it now, and says if `ip netns del` failed.
    pub fn delete(mut self) -> Result<()> {
        let name = std::mem::take(&mut self.name);
        sh(&format!("ip netns del {name}"))?;
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            let _ = quiet(&format!("ip netns del {}", self.name));
        }
    }
}

/// Moves the calling thread into namespace `ns` (sockets it opens afterwards live there);
/// the process's other threads stay where they are.
pub fn enter_netns(ns: &str) -> Result<()> {
    let file =
        File::open(Path::new(NETNS_DIR).join(ns)).with_context(|| format!("no namespace {ns}"))?;
    // SAFETY: setns on an nsfs descriptor we hold; CLONE_NEWNET changes only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("cannot enter {ns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a thread inside namespace `ns` and returns what it returned: a socket it
/// opens lives in `ns`, whichever thread uses it afterwards. A panic in `f` goes on here.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| enter_netns(ns).map(|()| f()));
        match worker.join() {
            Ok(done) => done,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The names under /run/netns that start with `prefix`, sorted.
pub fn named_with_prefix(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}
