//! Namespaces and interfaces that come and go under the tracer. Every few seconds one
//! namespace with a veth into `soak-b` carries a little traffic (pings forwarded on to
//! `soak-a`, short TCP exchanges, a datagram iptables drops), then is deleted while a ping
//! still runs inside it. Two kinds alternate:
//!
//! - pool namespaces (`soak-pN`), created before the tracer starts, so it is attached to
//!   them (netfilter in the namespace, tc and XDP on both veth ends): deleted with
//!   `ip netns del`, every other one after `ip link del` of its veth;
//! - fresh namespaces (`soak-cN`) created during the trace: `tracer -n` (and `-n all`) only
//!   attaches to namespaces that exist when it starts, so these are seen from `soak-b`
//!   alone, on an interface created after the start and deleted under the tracer.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Result;

use super::{
    topology::{veth_to_b, A4, B, DROPPED_UDP, ECHO},
    traffic::{exchange, socket_in, Counts},
};
use harness::{enter_netns, process::spawn_in, sh, Netns};

/// One pool namespace every this many churn cycles; fresh ones in between.
const POOL_EVERY: u64 = 5;
/// At most this many pool namespaces: each adds about 0.1 s of attach time and 25 links.
const POOL_MAX: usize = 24;
/// Kept last errors of failed cycles.
const ERRORS_KEPT: usize = 5;

/// How many pool namespaces a run of `seconds` with a cycle every `every` uses.
pub fn pool_size(seconds: u64, every: u64) -> usize {
    let cycles = seconds / every.max(1);
    ((cycles / POOL_EVERY) as usize).clamp(1, POOL_MAX)
}

#[derive(Default, Debug)]
pub struct Progress {
    pub fresh_created: AtomicU64,
    pub fresh_deleted: AtomicU64,
    pub pool_deleted: AtomicU64,
    /// `ip link del` of a veth end in a traced namespace while the tracer was attached.
    pub links_deleted: AtomicU64,
    pub cycles_failed: AtomicU64,
    pub errors: Mutex<Vec<String>>,
}

impl Progress {
    pub fn deleted(&self) -> u64 {
        self.fresh_deleted.load(Relaxed) + self.pool_deleted.load(Relaxed)
    }
}

pub struct Churn {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub progress: Arc<Progress>,
}

impl Churn {
    /// Runs cycles every `every` until `until`, or until stopped; the pool is deleted one by
    /// one in the course of the run (any left at the end are deleted then).
    pub fn start(pool: Vec<Netns>, every: Duration, until: Duration, counts: Arc<Counts>) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(Progress::default());
        let thread = {
            let (stop, progress) = (Arc::clone(&stop), Arc::clone(&progress));
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut pool = pool.into_iter().enumerate();
                for k in 0u64.. {
                    let due = every * k as u32;
                    while start.elapsed() < due && !stop.load(Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    if stop.load(Relaxed) || start.elapsed() >= until {
                        break;
                    }
                    let outcome = match (k % POOL_EVERY == 0).then(|| pool.next()).flatten() {
                        Some((i, ns)) => pool_cycle(i, ns, &progress, &counts),
                        None => fresh_cycle(k, &progress, &counts),
                    };
                    if let Err(err) = outcome {
                        progress.cycles_failed.fetch_add(1, Relaxed);
                        let mut errors = progress.errors.lock().expect("errors");
                        errors.push(format!("cycle {k}: {err:#}"));
                        let excess = errors.len().saturating_sub(ERRORS_KEPT);
                        errors.drain(..excess);
                    }
                }
                // Whatever is left of the pool is deleted as the iterator drops.
            })
        };
        Churn {
            stop,
            thread: Some(thread),
            progress,
        }
    }

    /// Stops after the cycle under way.
    pub fn stop(mut self) -> Arc<Progress> {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        Arc::clone(&self.progress)
    }
}

/// A namespace created now, used, then deleted.
fn fresh_cycle(k: u64, progress: &Progress, counts: &Counts) -> Result<()> {
    let name = format!("soak-c{k}");
    let ns = Netns::create(&name)?;
    progress.fresh_created.fetch_add(1, Relaxed);
    let outer = format!("vc{k}");
    // Subnets are not reused within a run of up to 250 cycles (20 min at one per 5 s): the
    // last namespace's veth may outlive its deletion for a moment.
    veth_to_b(&name, "c0", &outer, &format!("10.204.{}", 1 + k % 250))?;
    vanish(
        ns,
        &outer,
        k % 2 == 1,
        &format!("10.204.{}.1", 1 + k % 250),
        counts,
        progress,
    )?;
    progress.fresh_deleted.fetch_add(1, Relaxed);
    Ok(())
}

/// A pool namespace the tracer is attached to, used, then deleted.
fn pool_cycle(i: usize, ns: Netns, progress: &Progress, counts: &Counts) -> Result<()> {
    vanish(
        ns,
        &format!("vp{i}"),
        i.is_multiple_of(2),
        &format!("10.205.{i}.1"),
        counts,
        progress,
    )?;
    progress.pool_deleted.fetch_add(1, Relaxed);
    Ok(())
}

/// Traffic from `ns` to B's end (`gateway`) and through B to A, then, with a ping still
/// running: `ip link del` of B's end if `del_link`, and `ip netns del`.
fn vanish(
    ns: Netns,
    outer: &str,
    del_link: bool,
    gateway: &str,
    counts: &Counts,
    progress: &Progress,
) -> Result<()> {
    let name = ns.name.clone();
    let ping = spawn_in(&name, &format!("ping -q -i 0.05 {A4}"))?;
    let echo: SocketAddr = format!("{gateway}:{ECHO}").parse()?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<()> {
                enter_netns(&name)?;
                for _ in 0..3 {
                    exchange(echo, counts);
                }
                Ok(())
            })
            .join()
            .expect("exchange thread")
    })?;
    let socket = socket_in(&name, || std::net::UdpSocket::bind("0.0.0.0:0"))?;
    socket.send_to(b"dropped by iptables", (gateway, DROPPED_UDP))?;
    drop(socket);
    std::thread::sleep(Duration::from_millis(500));
    if del_link {
        sh(&format!("ip -n {B} link del {outer}"))?;
        progress.links_deleted.fetch_add(1, Relaxed);
        std::thread::sleep(Duration::from_millis(200));
    }
    // Deleted while the ping's process still holds it: the name goes at once, the namespace
    // when its last user does.
    ns.delete()?;
    drop(ping);
    Ok(())
}
