//! The FILTER of `tracer trace`: a tcpdump (pcap-filter) expression, compiled by libpcap into
//! classic BPF twice, for hooks that see the Ethernet frame (XDP, tc: what tcpdump sees on a
//! veth or NIC) and for hooks that see the packet from its IP header on (netfilter, the
//! tracepoints). The kernel programs run these programs (`tracer_common::cbpf`).

use tracer_common::cbpf::{self, dlt, Insn, Invalid, Program, MAX_INSNS};

use crate::kernel::libpcap::{self, CompileError};

/// A compiled filter. A program is `None` for a link type the expression cannot apply to
/// (`ether host ...` has no meaning on a raw IP packet): those hooks only follow packets
/// that matched elsewhere.
#[derive(Debug)]
pub struct Filter {
    pub expression: String,
    pub l2: Option<Program>,
    pub l3: Option<Program>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    /// libpcap's message, the one tcpdump prints for the same expression.
    #[error("bad filter '{expression}': {message}")]
    Rejected { expression: String, message: String },
    #[error("{0}")]
    Library(String),
    #[error("the filter '{0}' compiles to {1} BPF instructions; the kernel programs run at most {MAX_INSNS}")]
    TooLong(String, usize),
    #[error("the filter '{0}' needs Linux's socket-filter extensions, which the kernel programs cannot evaluate")]
    Ancillary(String),
    #[error(
        "libpcap compiled '{0}' into a program the kernel programs cannot run (instruction {1})"
    )]
    Malformed(String, usize),
}

/// Compiles the words of FILTER (joined with spaces, as tcpdump does); `None` when empty.
pub fn compile(words: &[String]) -> Result<Option<Filter>, FilterError> {
    let expression = words.join(" ").trim().to_string();
    if expression.is_empty() {
        return Ok(None);
    }
    let l2 = program(&expression, dlt::EN10MB);
    let l3 = program(&expression, dlt::RAW);
    match (l2, l3) {
        (Err(e), Err(_)) => Err(e),
        (l2, l3) => Ok(Some(Filter {
            expression,
            l2: l2.ok(),
            l3: l3.ok(),
        })),
    }
}

fn program(expression: &str, dlt: i32) -> Result<Program, FilterError> {
    let insns = libpcap::compile(expression, dlt).map_err(|e| match e {
        CompileError::Library(message) => FilterError::Library(message),
        CompileError::Rejected(message) => FilterError::Rejected {
            expression: expression.to_string(),
            message,
        },
    })?;
    cbpf::validate(&insns).map_err(|e| match e {
        Invalid::TooLong(n) => FilterError::TooLong(expression.to_string(), n),
        Invalid::Ancillary => FilterError::Ancillary(expression.to_string()),
        Invalid::Malformed(at) => FilterError::Malformed(expression.to_string(), at),
    })?;
    Ok(to_program(&insns))
}

fn to_program(insns: &[Insn]) -> Program {
    let mut program = Program::EMPTY;
    program.len = insns.len() as u32;
    program.insns[..insns.len()].copy_from_slice(insns);
    program
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
