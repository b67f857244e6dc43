//! Programs running in the background: killed on drop, interrupted as a person would, waited
//! for until they are ready.

use std::{
    path::Path,
    process::{Child, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::command::command_in;

/// A child process killed (and reaped) when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `line` inside `ns` in the background, its output discarded, killed on drop.
pub fn spawn_in(ns: &str, line: &str) -> Result<KillOnDrop> {
    let child = command_in(ns, line)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {line} in {ns}"))?;
    Ok(KillOnDrop(child))
}

/// Sends SIGINT to `child` (as Ctrl-C would) and waits for it.
pub fn interrupt(child: &mut Child) -> Result<ExitStatus> {
    // SAFETY: kill(2) on the pid of a child we own and have not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    Ok(child.wait()?)
}

/// Waits until `path` exists or `child` died; the time it took.
pub fn wait_for_file(path: &Path, child: &mut Child, limit: Duration) -> Result<Duration> {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait()? {
            bail!("exited ({status}) before {} appeared", path.display());
        }
        if start.elapsed() > limit {
            bail!("{} did not appear within {limit:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(start.elapsed())
}
