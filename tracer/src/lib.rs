//! `tracer`: follows packets through the Linux network stack and says where each one went,
//! where it died and whether tcpdump saw it.
//!
//! The crate is in layers; each imports only the layers below it (`tests/layers.rs` checks;
//! `docs/design.md` tells the whole design):
//!
//! ```text
//! cmd       commands: trace, explain, lab, doctor, cleanup
//! lab       built-in scenarios, each with its fault and its check
//! trace     a live trace: attach, read the ring, decode
//! report    text, JSON, pcapng, explanations
//! analysis  journeys, fates, copies, flows, tcpdump verdicts (pure)
//! model     sightings, the trace's end and gaps, recordings
//! kernel    programs, links, BTF, namespaces, netlink, what the system shows
//! ```

pub mod cmd;

mod analysis;
mod kernel;
mod lab;
mod model;
mod report;
mod trace;

/// The property-test runner, shared with `tracer-common`'s parser properties.
#[cfg(test)]
#[path = "../../tracer-common/tests/fuzzing/runner.rs"]
mod fuzzing;
