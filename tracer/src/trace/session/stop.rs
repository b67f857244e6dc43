//! The end of a session: the programs detached between reads of the ring, the last events
//! read, and what the kernel counted (losses, skipped runs, the rules and counters after).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use aya::maps::PerCpuArray;
use tracer_common::{hook::Hook, names};

use super::{Session, Traced};
use crate::{
    analysis::fate::TraceEnd,
    kernel::loader,
    model::{
        gaps,
        recording::{self, Recording, TraceClock},
        sighting::Sighting,
    },
    report::stats::Stats,
};

impl Session {
    /// Stops observing, reads what is left and what the kernel counted.
    pub(super) fn finish(
        &mut self,
        mut stats: Stats,
        mut sightings: Vec<Sighting>,
    ) -> Result<Traced> {
        let end_ns = crate::kernel::clock::monotonic_ns();
        // The points are detached one after the other: netfilter's links a grace period each,
        // then tc, then the tracepoints. Meanwhile those left see packets the others no
        // longer do (a driver's answer at an skb address tc would have found reused), so what
        // they write after the end is left out.
        self.ends_at_ns = end_ns;
        // How often the kernel skipped a program is kept in the program: hold them open to read
        // it once they can no longer run.
        let misses = crate::kernel::misses::MissCounters::hold(&self.ebpf)?;
        // Nothing may be written to the ring after its last read: such an event would be
        // neither read nor counted lost, and a packet in flight would lose its last points.
        self.stop_observing(&mut stats, &mut sightings);
        stats.missed = misses.per_hook()?;
        self.read_ring(&mut stats, &mut sightings, None);
        // Read before the live view finishes: the drops no earlier read named wait for it.
        let rules = self.rules.read_now();
        let live = self.live_view.take().map(|view| view.finish(&rules));
        (stats.lost, stats.lost_per_cpu) = self.lost_counts()?;
        stats.duration_ns = self.started.elapsed().as_nanos() as u64;
        let context = recording::Context {
            live: self.live_captures(),
            counters: self.counter_changes(),
            rules,
            // Used by the live view as they came, and recorded among the events.
            rule_snapshots: Vec::new(),
            // Events not kept count as lost: journeys they cut are marked incomplete.
            end: TraceEnd {
                end_ns,
                lost: stats.lost_total() + stats.not_kept + stats.missed_total(),
                gaps: gaps::find(&sightings, &stats.lost_per_cpu, stats.not_kept, end_ns)
                    .into_iter()
                    .chain(gaps::anywhere(stats.missed_total(), end_ns))
                    .collect(),
                partial_hooks: self.netfilter.partial_hooks(),
            },
            clock: Some(TraceClock {
                wall_minus_monotonic_ns: self.clock.offset_ns(),
                duration_ns: stats.duration_ns,
            }),
        };
        if let Some(recorder) = self.recorder.take() {
            recorder.finish(&context)?;
        }
        Ok(Traced {
            recording: Recording { sightings, context },
            stats,
            live,
        })
    }

    /// Detaches every program: netfilter links, tc filters, and the programs aya holds (the
    /// ring and the other maps stay for the last read).
    fn stop_observing(
        &mut self,
        stats: &mut Stats,
        sightings: &mut Vec<crate::model::sighting::Sighting>,
    ) {
        // Read between the steps: under load the kernel fills the ring while netfilter's links
        // are released one grace period at a time, and what it could not queue would count
        // as lost.
        while self.netfilter.detach_one_namespace() {
            self.read_ring(stats, sightings, None);
        }
        self.interface_programs.detach();
        self.read_ring(stats, sightings, None);
        loader::detach_programs(&mut self.ebpf);
    }

    /// Events the kernel could not queue, per hook and per CPU.
    pub(super) fn lost_counts(&self) -> Result<(BTreeMap<String, u64>, BTreeMap<u16, u64>)> {
        let lost: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(names::LOST).context("map LOST missing")?)?;
        let (mut per_hook, mut per_cpu) = (BTreeMap::new(), BTreeMap::new());
        for hook in Hook::ALL {
            let counts = lost.get(&(hook as u32), 0)?;
            for (cpu, &n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
                *per_hook.entry(hook.name().to_string()).or_default() += n;
                *per_cpu.entry(cpu as u16).or_default() += n;
            }
        }
        Ok((per_hook, per_cpu))
    }
}
