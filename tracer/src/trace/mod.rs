//! A live trace: attach, read the ring, decode, and hand a recording to the analysis.

pub mod attached;
pub mod fault;
pub mod live;
pub mod session;
pub mod usage;
