//! Reports: text, JSON, pcapng, the explanations and the live status line, drawn from an
//! analysis.

pub mod explanation;
pub mod line;
pub mod output;
pub mod packet_file;
pub mod paint;
pub mod pcapng;
pub mod stats;
pub mod status;
pub mod stdout;

/// Version of the JSON-lines schema; bumped when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;
