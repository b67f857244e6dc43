//! The typed model: a sighting (one event, decoded), the trace's end and gaps, and the
//! recording format. Imports only the kernel side.

pub mod drop_reason;
pub mod encapsulated;
pub mod gaps;
pub mod protocol;
pub mod recording;
pub mod sighting;
pub mod tcp_flags;
pub mod trace_end;
