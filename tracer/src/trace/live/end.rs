//! The end of a live trace: the flows still open, the summary (text) or the `stats` record
//! (JSON), once the trace's context (the kernel's counters) is known.

use std::io::{self, Write};

use anyhow::Result;

use super::{flows::flow_analysis, Incomplete, LiveView};
use crate::{
    analysis::{live_flows::LiveFlows, Context},
    report::{
        explanation::counter_checks,
        output::{stats_json, write_flow_json, write_flow_line, write_footer_lines},
        paint::Paint,
        stats::Stats,
        stdout::Format,
    },
    trace::live::LiveOptions,
};

pub struct LiveEnd {
    flows: LiveFlows,
    options: LiveOptions,
    paint: Paint,
    notes: std::collections::BTreeMap<(String, &'static str), i64>,
    incomplete: Incomplete,
    ended: Vec<u8>,
    ended_not_listed: u64,
    closed: bool,
    captures: Vec<crate::kernel::live_capture::LiveCapture>,
    /// Journeys closed before their time to keep the open ones bounded.
    cut_short: u64,
    packet_file: Option<crate::report::packet_file::PacketFile>,
    out: Box<dyn Write>,
}

impl LiveEnd {
    pub(super) fn new(view: LiveView, cut_short: u64) -> LiveEnd {
        LiveEnd {
            flows: view.flows,
            options: view.options,
            paint: view.paint,
            notes: view.notes,
            incomplete: view.incomplete,
            ended: view.ended,
            ended_not_listed: view.ended_not_listed,
            closed: view.closed,
            captures: view.captures,
            cut_short,
            packet_file: view.packet_file,
            out: view.out,
        }
    }

    /// Writes the flows still open and the end of the report; returns how many packets the
    /// `-w` file holds, if there is one.
    pub fn report(mut self, context: &Context, stats: &Stats) -> Result<Option<usize>> {
        let written = self.packet_file.take().map(|f| f.finish()).transpose()?;
        if self.closed {
            return Ok(written);
        }
        let mut sink = std::mem::replace(&mut self.out, Box::new(io::sink()));
        let mut out = io::BufWriter::new(&mut sink);
        self.write(&mut out, context, stats)?;
        out.flush()?;
        Ok(written)
    }

    fn write(mut self, out: &mut impl Write, context: &Context, stats: &Stats) -> io::Result<()> {
        let early = self.flows.ended_early;
        let open = std::mem::take(&mut self.flows).finish();
        let mut incomplete = self.incomplete;
        let notes = &self.notes;
        let checks = counter_checks(&context.counters, |ns, note| {
            notes.get(&(ns.to_string(), note)).copied().unwrap_or(0)
        });
        let text = matches!(self.options.format, Format::Text);
        if text {
            writeln!(out)?;
            let title = "flows (each packet was shown above as it went):";
            writeln!(out, "{}", self.paint.bold(title))?;
            out.write_all(&self.ended)?;
            if self.ended_not_listed > 0 {
                writeln!(
                    out,
                    "({} more flows ended during the trace, not listed)",
                    self.ended_not_listed
                )?;
            }
        }
        for flow in open {
            incomplete.flows += usize::from(flow.flow.incomplete_packets > 0);
            let context = Context {
                live: self.captures.clone(),
                rules: context.rules.clone(),
                ..Context::default()
            };
            let (analysis, not_kept) = flow_analysis(flow, context);
            let flow = &analysis.flows[0];
            if !self.options.selection.flow(flow, &analysis) {
                continue;
            }
            match self.options.format {
                Format::Json => write_flow_json(out, flow, &analysis, not_kept)?,
                Format::Text => write_flow_line(out, flow, &analysis, self.paint)?,
            }
        }
        if early > 0 && text {
            writeln!(
                out,
                "{early} flows were ended early to keep the table of open flows bounded: each \
                 was reported with what it had so far"
            )?;
        }
        if self.cut_short > 0 && text {
            writeln!(
                out,
                "{} packets were closed early to keep the journeys open at once bounded (marked \
                 incomplete): their last points may be missing",
                self.cut_short
            )?;
        }
        let counts = (incomplete.packets, incomplete.flows);
        if text {
            return write_footer_lines(out, &checks, stats, counts, self.paint);
        }
        let mut stats = stats_json(stats, counts, &context.counters, &checks);
        if early > 0 {
            stats["flows_ended_early"] = serde_json::json!(early);
        }
        if self.cut_short > 0 {
            stats["journeys_cut_short"] = serde_json::json!(self.cut_short);
        }
        writeln!(out, "{stats}")
    }
}
