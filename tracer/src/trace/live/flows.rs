//! The live view's flows: a flow's record or summary line when it ends, the open flows every
//! `--summary-every`, and what a flow's analysis is drawn from.

use std::io::{self, Write};

use super::LiveView;
use crate::{
    analysis::{live_flows::LiveFlow, retransmissions::retransmissions, Analysis, Context},
    report::{
        output::{write_flow_json, write_flow_line},
        stdout::Format,
    },
};

/// Flows that ended during the trace listed in the text summary at exit; the others counted.
const ENDED_FLOWS_LISTED: usize = 1000;

impl LiveView {
    /// Every `--summary-every`: a line per flow open now, with the why sentences of those
    /// where a packet did not make it.
    pub(super) fn summary_if_due(&mut self, now_ns: u64) {
        let Some(every) = self.options.summary_every_ns else {
            return;
        };
        let due = *self.next_summary_ns.get_or_insert(now_ns + every);
        if now_ns < due || self.closed || !matches!(self.options.format, Format::Text) {
            return;
        }
        self.next_summary_ns = Some(now_ns + every);
        let mut text = Vec::new();
        let title = format!(
            "flows open at {}:",
            self.clock
                .time_of_day(now_ns)
                .split('.')
                .next()
                .unwrap_or("")
        );
        let _ = writeln!(text, "{}", self.paint.bold(&title));
        for live in self.flows.iter_open() {
            let repeats = retransmissions(&live.journeys);
            let (journeys, flow) = (live.journeys.clone(), live.flow.clone());
            let context = self.flow_context(&journeys);
            let analysis = Analysis::window(journeys, vec![flow], repeats, context);
            let flow = &analysis.flows[0];
            if self.options.selection.flow(flow, &analysis) {
                let _ = write_flow_line(&mut text, flow, &analysis, self.paint);
            }
        }
        if self
            .out
            .write_all(&text)
            .and_then(|()| self.out.flush())
            .is_err()
        {
            self.closed = true;
        }
    }

    /// A flow that ended: its record (JSON), or its line kept for the summary at exit (text).
    pub(super) fn flow_ended(&mut self, out: &mut impl Write, flow: LiveFlow) -> io::Result<()> {
        if flow.flow.incomplete_packets > 0 {
            self.incomplete.flows += 1;
        }
        let context = self.flow_context(&flow.journeys);
        let (analysis, not_kept) = flow_analysis(flow, context);
        let flow = &analysis.flows[0];
        if !self.options.selection.flow(flow, &analysis) {
            return Ok(());
        }
        match self.options.format {
            Format::Json => write_flow_json(out, flow, &analysis, not_kept),
            Format::Text if self.ended_listed < ENDED_FLOWS_LISTED => {
                self.ended_listed += 1;
                write_flow_line(&mut self.ended, flow, &analysis, self.paint)
            }
            Format::Text => {
                self.ended_not_listed += 1;
                Ok(())
            }
        }
    }
}

/// The analysis of one flow, from the journeys it kept; and how many it did not keep.
pub(super) fn flow_analysis(live: LiveFlow, context: Context) -> (Analysis, u64) {
    let LiveFlow {
        flow,
        journeys,
        not_kept,
        ..
    } = live;
    let repeats = retransmissions(&journeys);
    (
        Analysis::window(journeys, vec![flow], repeats, context),
        not_kept,
    )
}
