//! The machinery shared by the labs (`tracer lab`, shipped in the binary), the integration
//! tests (`tests/`) and xtask's bench and soak: throwaway namespaces and veth pairs removed on
//! drop, command lines run as a person types them, background processes killed on drop, a
//! real tcpdump as the oracle, and "foreign" BPF programs (another tool's) loaded and attached
//! through one bpf(2) wrapper.
//!
//! Errors are `anyhow` errors that say which command failed and what it printed; the tests
//! turn them into panics, the labs and xtask pass them on.

pub mod bpf;
pub mod command;
pub mod foreign;
pub mod netns;
pub mod process;
pub mod programs;
pub mod tcpdump;
pub mod veth;

pub use command::{command, command_in, output, quiet, sh};
pub use netns::{enter_netns, in_netns, Netns};
pub use process::KillOnDrop;
pub use veth::{Direct, End, Shell};
