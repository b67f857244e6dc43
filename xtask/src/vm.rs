//! `cargo xtask vm`: one command inside another Debian kernel (6.1, 6.12) under qemu, with
//! the host's root filesystem as the guest's (read-only, writable through an overlay), so
//! that the host's binaries and tools run unchanged on the older kernel.
//!
//! `run_in_kernel` is the library side for a kernel matrix: one script, one kernel, the
//! result and the console to build a report from.

mod cpio;
mod initramfs;
mod kernel;
pub mod matrix;
mod qemu;
mod vmlinux;

use std::{
    fs,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{bail, Result};

use crate::{build, setup};

#[derive(clap::Args)]
pub struct VmArgs {
    /// Debian kernel series to boot: 6.1 or 6.12 (the newest package of that series).
    #[arg(long)]
    kernel: String,
    /// Seconds for boot and command together before qemu is killed.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Build the tracer (release) first and pass its path to the guest as $TRACER.
    #[arg(long)]
    tracer: bool,
    /// After `--`: a command and its arguments, or one argument holding a whole sh script
    /// (`-- 'uname -r; ip link'`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// How one run ended. `exit_code` is `None` when the command did not finish: `problem` says
/// why (timeout, the VM could not mount its root, qemu died); `console` has the details.
pub struct VmOutcome {
    pub exit_code: Option<i32>,
    /// `uname -r` in the guest (the package's version if the guest never got that far).
    pub kernel: String,
    /// The whole serial console: kernel messages, init's markers, the command's output.
    #[allow(dead_code)] // for run_in_kernel's callers; `cargo xtask vm` echoes it instead
    pub console: String,
    /// From qemu's start to the command's start.
    pub boot_time: Option<Duration>,
    /// The command alone.
    pub command_time: Option<Duration>,
    pub problem: Option<String>,
    /// Where the console was written (`target/vm/<series>/console-<run>.log`).
    pub log: PathBuf,
}

/// `cargo xtask vm`: exits with the command's status.
pub fn run(args: &VmArgs) -> Result<()> {
    let mut env = Vec::new();
    if args.tracer {
        let tracer = build::tracer(true)?;
        env.push(("TRACER".to_string(), tracer.to_string_lossy().into_owned()));
    }
    let script = match args.command.as_slice() {
        [script] => script.clone(),
        words => words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" "),
    };
    let timeout = Duration::from_secs(args.timeout);
    let outcome = run_script(&args.kernel, &script, timeout, &env, true)?;
    let seconds =
        |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64()));
    eprintln!(
        "vm: {}: boot {}, command {}, exit {} (console: {})",
        outcome.kernel,
        seconds(outcome.boot_time),
        seconds(outcome.command_time),
        outcome.exit_code.map_or("-".into(), |c| c.to_string()),
        outcome.log.display(),
    );
    match (outcome.exit_code, outcome.problem) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => std::process::exit(code),
        (None, problem) => bail!("{}", problem.unwrap_or_default()),
    }
}

/// Runs `script` (sh syntax) as root in the newest Debian kernel of `series`, with the
/// host's files, in the caller's current directory. Fails only if the VM cannot be started
/// (packages, kernel download, qemu missing); a run that goes wrong inside is an outcome.
pub fn run_in_kernel(series: &str, script: &str, timeout: Duration) -> Result<VmOutcome> {
    run_script(series, script, timeout, &[], false)
}

fn run_script(
    series: &str,
    script: &str,
    timeout: Duration,
    env: &[(String, String)],
    echo: bool,
) -> Result<VmOutcome> {
    setup::kernel_vms()?;
    let kernel = kernel::fetch(series)?;
    let target = build::workspace_root().join("target");
    let dir = target.join("vm").join(series);
    let out = target.join("vm/out");
    fs::create_dir_all(&dir)?;
    fs::create_dir_all(&out)?;
    // Names of this run's files: runs of the same kernel may overlap (processes, threads).
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let run = format!(
        "{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let initrd = dir.join(format!("initrd-{run}.gz"));
    let layout = initramfs::Layout {
        kernel: &kernel,
        out: &out,
        script: &guest_script(script, env, &out)?,
    };
    initramfs::build(&layout, &initrd)?;
    let log = dir.join(format!("console-{run}.log"));
    let console = qemu::boot(&qemu::Boot {
        kernel: &kernel,
        initrd: &initrd,
        out: &out,
        log: &log,
        timeout,
        echo,
    });
    let _ = fs::remove_file(&initrd);
    let console = console?;

    let boot_time = console.ready.as_ref().map(|(at, _)| *at);
    let problem = if console.exit.is_some() {
        None
    } else if let Some(error) = &console.error {
        Some(format!("the VM could not run the command: {error}"))
    } else if console.timed_out {
        Some(format!("timed out after {} s", timeout.as_secs()))
    } else {
        Some("qemu stopped before the command finished".to_string())
    };
    Ok(VmOutcome {
        exit_code: console.exit.map(|(code, _)| code),
        kernel: console.ready.map_or(kernel.version, |(_, k)| k),
        command_time: console
            .exit
            .zip(boot_time)
            .map(|((_, end), start)| end.saturating_sub(start)),
        boot_time,
        console: console.text,
        problem,
        log,
    })
}

/// /cmd.sh: a plain environment (the host's is not inherited: the guest has its own
/// /run and /tmp), the caller's directory, then `script`.
fn guest_script(script: &str, env: &[(String, String)], out: &std::path::Path) -> Result<String> {
    let cwd: PathBuf = std::env::current_dir()?;
    let mut text = String::from(
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export HOME=/root LANG=C.UTF-8\n\
         # The console log is read by programs: no colours, no pagers.\n\
         export TERM=dumb NO_COLOR=1 PAGER=cat\n",
    );
    let out = out.to_string_lossy();
    let mut vars = vec![("VM_OUT".to_string(), out.into_owned())];
    vars.extend(env.iter().cloned());
    for (name, value) in vars {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("not a variable name: {name:?}");
        }
        text.push_str(&format!("export {name}={}\n", shell_quote(&value)));
    }
    text.push_str(&format!(
        "cd {} || exit 125\n",
        shell_quote(&cwd.to_string_lossy())
    ));
    text.push_str(script);
    text.push('\n');
    Ok(text)
}

/// `word` as one sh word.
pub(crate) fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(
            shell_quote("/work/main/target/release/tracer"),
            "/work/main/target/release/tracer"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
