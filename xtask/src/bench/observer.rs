//! What watches the traffic during a datapath run: nothing, the tracer, or tcpdump.

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use harness::tcpdump::Tcpdump;
use serde_json::Value;

use super::net::{interrupt, wait_for_file, CLIENT, SERVER};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Observer {
    Baseline,
    /// The tracer's programs attached as for a trace, each returning at once
    /// (`--attach-only`): what the points alone cost, the floor under the rows below.
    TracerAttachOnly,
    /// The same with one family of points left unattached (`--floor-parts`): what that
    /// family adds to the floor, by difference.
    TracerAttachOnlyWithout(PointFamily),
    /// The floor with every netfilter hook linked (`--netfilter-hooks all`, as labs trace;
    /// `--floor-parts`): what linking only the hooks a trace needs saves, by difference.
    TracerAttachOnlyEveryNetfilterHook,
    /// The tracer on both namespaces with a filter no packet matches.
    TracerNothing,
    /// The same with every netfilter hook linked (`--floor-parts`).
    TracerNothingEveryNetfilterHook,
    /// The tracer following every packet of the flow at every default point.
    TracerFlow,
    /// The same with `--xdp`.
    TracerFlowXdp,
    /// `tcpdump -w` on the server's interface, default snap length (262144).
    TcpdumpFull,
    /// `tcpdump -w -s 96`: headers only.
    TcpdumpHeaders,
}

impl Observer {
    pub fn label(self) -> &'static str {
        match self {
            Observer::Baseline => "baseline (nothing attached)",
            Observer::TracerAttachOnly => "tracer, programs returning at once",
            Observer::TracerAttachOnlyWithout(family) => match family {
                PointFamily::Netfilter => "the same without netfilter's points",
                PointFamily::Tc => "the same without tc's points",
                PointFamily::Tracepoints => "the same without the tracepoints",
            },
            Observer::TracerAttachOnlyEveryNetfilterHook => {
                "the same with every netfilter hook linked (as labs)"
            }
            Observer::TracerNothing => "tracer, filter matching nothing",
            Observer::TracerNothingEveryNetfilterHook => {
                "tracer, filter matching nothing, every netfilter hook linked"
            }
            Observer::TracerFlow => "tracer, following the flow",
            Observer::TracerFlowXdp => "tracer --xdp, following the flow",
            Observer::TcpdumpFull => "tcpdump -w (full snaplen)",
            Observer::TcpdumpHeaders => "tcpdump -w -s 96 (headers)",
        }
    }
}

/// An observer while it runs.
pub struct Watching {
    process: Option<Process>,
    scratch: PathBuf,
}

/// The observer's process.
enum Process {
    /// The tracer, and the thread that reads its output, keeping the end of it.
    Tracer(Child, std::thread::JoinHandle<String>),
    Tcpdump(Tcpdump),
}

/// A family of the tracer's points (its hidden `--skip-points`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PointFamily {
    Netfilter,
    Tc,
    Tracepoints,
}

impl PointFamily {
    pub const ALL: [PointFamily; 3] = [
        PointFamily::Netfilter,
        PointFamily::Tc,
        PointFamily::Tracepoints,
    ];

    fn arg(self) -> &'static str {
        match self {
            PointFamily::Netfilter => "netfilter",
            PointFamily::Tc => "tc",
            PointFamily::Tracepoints => "tracepoints",
        }
    }
}

/// What an observer says of itself once stopped.
#[derive(Default, Debug, Clone, Copy)]
pub struct Report {
    /// Events the tracer read (kept or not), or packets tcpdump captured.
    pub events: u64,
    pub lost: u64,
}

/// Starts `observer` for traffic matching `flow_filter`; returns once it is ready.
pub fn start(tracer: &Path, observer: Observer, flow_filter: &str) -> Result<Watching> {
    start_on(tracer, observer, flow_filter, None)
}

/// [`start`], with the tracer confined to CPU `cpu` when one is given (`taskset`, which
/// becomes the tracer: its pid is the tracer's).
pub fn start_on(
    tracer: &Path,
    observer: Observer,
    flow_filter: &str,
    cpu: Option<usize>,
) -> Result<Watching> {
    let scratch = std::env::temp_dir().join(format!("xbench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let ready = scratch.join("ready");
    let _ = std::fs::remove_file(&ready);
    let process = match observer {
        Observer::Baseline => {
            return Ok(Watching {
                process: None,
                scratch,
            })
        }
        Observer::TracerAttachOnly
        | Observer::TracerAttachOnlyWithout(_)
        | Observer::TracerAttachOnlyEveryNetfilterHook
        | Observer::TracerNothing
        | Observer::TracerNothingEveryNetfilterHook
        | Observer::TracerFlow
        | Observer::TracerFlowXdp => {
            let filter = match observer {
                Observer::TracerNothing | Observer::TracerNothingEveryNetfilterHook => {
                    "host 192.0.2.1"
                }
                _ => flow_filter,
            };
            let mut cmd = match cpu {
                Some(cpu) => {
                    let mut cmd = std::process::Command::new("taskset");
                    cmd.args(["-c", &cpu.to_string()]).arg(tracer);
                    cmd
                }
                None => std::process::Command::new(tracer),
            };
            // The streaming engine, as a trace that runs for long: every packet's record
            // written as its journey closes, read and thrown away here but for the end.
            cmd.args([
                "trace", "-n", CLIENT, "-n", SERVER, "--live", "--format", "json",
            ])
            .arg("--ready-file")
            .arg(&ready);
            if observer == Observer::TracerFlowXdp {
                cmd.arg("--xdp");
            }
            match observer {
                Observer::TracerAttachOnly => {
                    cmd.arg("--attach-only");
                }
                Observer::TracerAttachOnlyWithout(family) => {
                    cmd.args(["--attach-only", "--skip-points", family.arg()]);
                }
                Observer::TracerAttachOnlyEveryNetfilterHook => {
                    cmd.args(["--attach-only", "--netfilter-hooks", "all"]);
                }
                Observer::TracerNothingEveryNetfilterHook => {
                    cmd.args(["--netfilter-hooks", "all"]);
                }
                _ => {}
            }
            cmd.args(filter.split_whitespace())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            let mut child = cmd.spawn().context("cannot start the tracer")?;
            let stdout = child.stdout.take().context("the tracer's stdout")?;
            let reader = std::thread::spawn(move || keep_the_end(stdout));
            wait_for_file(&ready, &mut child, Duration::from_secs(180))
                .context("the tracer never became ready")?;
            Process::Tracer(child, reader)
        }
        Observer::TcpdumpFull | Observer::TcpdumpHeaders => {
            let snap: &[&str] = if observer == Observer::TcpdumpHeaders {
                &["-s", "96"]
            } else {
                &[]
            };
            let pcap = scratch.join("capture.pcap");
            Process::Tcpdump(Tcpdump::start(SERVER, "vb", snap, pcap, flow_filter)?)
        }
    };
    let mut watching = Watching {
        process: Some(process),
        scratch,
    };
    if let Some(Process::Tracer(child, _)) = &mut watching.process {
        if let Some(status) = child.try_wait()? {
            bail!("{} exited at once ({status})", observer.label());
        }
    }
    Ok(watching)
}

impl Watching {
    /// The observer's process, while it runs (none for the baseline).
    pub fn pid(&self) -> Option<u32> {
        match self.process.as_ref()? {
            Process::Tracer(child, _) => Some(child.id()),
            Process::Tcpdump(tcpdump) => Some(tcpdump.pid()),
        }
    }

    /// Stops the observer (SIGINT, as a user would) and reads what it reports.
    pub fn stop(mut self) -> Result<Report> {
        match self.process.take() {
            None => Ok(Report::default()),
            Some(Process::Tracer(mut child, reader)) => {
                let status = interrupt(&mut child)?;
                if !status.success() {
                    bail!("the tracer failed ({status})");
                }
                let end = reader
                    .join()
                    .map_err(|_| anyhow::anyhow!("the output reader panicked"))?;
                tracer_report(&end)
            }
            Some(Process::Tcpdump(mut tcpdump)) => Ok(tcpdump_report(&tcpdump.stop()?)),
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(Process::Tracer(child, _)) = self.process.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // tcpdump is killed, and its file removed, as it drops.
        self.process = None;
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// Reads the tracer's output to its end, keeping the last lines (the `stats` record is the
/// last): a streaming trace writes a few hundred MB a second under load.
fn keep_the_end(mut stdout: std::process::ChildStdout) -> String {
    const KEEP: usize = 1 << 20;
    let mut end: Vec<u8> = Vec::with_capacity(2 * KEEP);
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n @ 1..) = std::io::Read::read(&mut stdout, &mut buf) {
        end.extend_from_slice(&buf[..n]);
        if end.len() > 2 * KEEP {
            end.drain(..end.len() - KEEP);
        }
    }
    String::from_utf8_lossy(&end).into_owned()
}

/// Events and lost events from the tracer's `stats` record.
fn tracer_report(jsonl: &str) -> Result<Report> {
    let stats: Value = jsonl
        .lines()
        .rev()
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(|v| v["type"] == "stats")
        })
        .context("the tracer wrote no stats record")?;
    // Events read from the ring (the streaming engine keeps none back: `not_kept` is 0).
    let kept: u64 = stats["events"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
    let events = kept + stats["not_kept"].as_u64().unwrap_or(0);
    Ok(Report {
        events,
        lost: stats["lost_total"].as_u64().unwrap_or(0),
    })
}

/// "N packets captured" and "M packets dropped by kernel" from tcpdump's last words.
fn tcpdump_report(stderr: &str) -> Report {
    let number = |what: &str| {
        stderr
            .lines()
            .find(|l| l.ends_with(what))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Report {
        events: number("packets captured"),
        lost: number("packets dropped by kernel"),
    }
}
