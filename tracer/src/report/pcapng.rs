//! A minimal pcapng writer (draft-ietf-opsawg-pcapng): a section header, interface
//! descriptions and enhanced packets with comments, direction flags and verdicts. Written
//! here because the pcapng crates at hand cannot write the `epb_verdict` option.

use std::io::{self, Write};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;
const EPB_VERDICT: u16 = 7;

/// Link types of the interface blocks (LINKTYPE_* of the tcpdump registry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    Ethernet = 1,
    /// The packet from its IP header on (v4 or v6, told by the version nibble).
    Raw = 101,
}

/// Which way a packet went through an interface (`epb_flags` bits 0-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Unknown = 0,
    Inbound = 1,
    Outbound = 2,
}

/// `epb_verdict`: what a program decided for the packet, as Wireshark shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A Linux tc action (`TC_ACT_*`).
    Tc(i64),
    /// A Linux XDP action (`XDP_*`).
    Xdp(u64),
}

pub struct Interface<'a> {
    pub link: LinkType,
    pub snaplen: u32,
    pub name: &'a str,
    pub description: &'a str,
}

pub struct Packet<'a> {
    pub interface: u32,
    /// Nanoseconds since the Unix epoch (the interfaces say `if_tsresol` 9).
    pub ts_ns: u64,
    pub data: &'a [u8],
    pub orig_len: u32,
    pub direction: Direction,
    pub comments: &'a [String],
    pub verdict: Option<Verdict>,
}

pub struct Writer<W: Write> {
    out: W,
    interfaces: u32,
}

impl<W: Write> Writer<W> {
    /// Starts a section; `application` names the writer, `comment` says what was traced.
    pub fn new(mut out: W, application: &str, comment: &str) -> io::Result<Writer<W>> {
        let mut body = Vec::new();
        body.extend(BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend(1u16.to_le_bytes());
        body.extend(0u16.to_le_bytes());
        // Section length unknown: the file is written as it goes.
        body.extend((-1i64).to_le_bytes());
        option(&mut body, SHB_USERAPPL, application.as_bytes());
        option(&mut body, OPT_COMMENT, comment.as_bytes());
        end_options(&mut body);
        block(&mut out, SHB, &body)?;
        Ok(Writer { out, interfaces: 0 })
    }

    /// Describes an interface; returns the id packets refer to it by.
    pub fn interface(&mut self, interface: &Interface) -> io::Result<u32> {
        let mut body = Vec::new();
        body.extend((interface.link as u16).to_le_bytes());
        body.extend(0u16.to_le_bytes());
        body.extend(interface.snaplen.to_le_bytes());
        option(&mut body, IF_NAME, interface.name.as_bytes());
        option(&mut body, IF_DESCRIPTION, interface.description.as_bytes());
        option(&mut body, IF_TSRESOL, &[9]);
        end_options(&mut body);
        block(&mut self.out, IDB, &body)?;
        self.interfaces += 1;
        Ok(self.interfaces - 1)
    }

    pub fn packet(&mut self, packet: &Packet) -> io::Result<()> {
        let mut body = Vec::with_capacity(64 + packet.data.len());
        body.extend(packet.interface.to_le_bytes());
        body.extend(((packet.ts_ns >> 32) as u32).to_le_bytes());
        body.extend((packet.ts_ns as u32).to_le_bytes());
        body.extend((packet.data.len() as u32).to_le_bytes());
        body.extend(packet.orig_len.max(packet.data.len() as u32).to_le_bytes());
        body.extend(packet.data);
        pad(&mut body);
        for comment in packet.comments {
            option(&mut body, OPT_COMMENT, comment.as_bytes());
        }
        if packet.direction != Direction::Unknown {
            option(
                &mut body,
                EPB_FLAGS,
                &(packet.direction as u32).to_le_bytes(),
            );
        }
        if let Some(verdict) = packet.verdict {
            let (kind, value) = match verdict {
                Verdict::Tc(action) => (1u8, action.to_le_bytes()),
                Verdict::Xdp(action) => (2u8, action.to_le_bytes()),
            };
            let mut data = vec![kind];
            data.extend(value);
            option(&mut body, EPB_VERDICT, &data);
        }
        end_options(&mut body);
        block(&mut self.out, EPB, &body)
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

fn pad(bytes: &mut Vec<u8>) {
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
}

fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    body.extend(code.to_le_bytes());
    body.extend((value.len() as u16).to_le_bytes());
    body.extend(value);
    pad(body);
}

fn end_options(body: &mut Vec<u8>) {
    body.extend(OPT_END.to_le_bytes());
    body.extend(0u16.to_le_bytes());
}

/// Type, total length, body, total length again.
fn block(out: &mut impl Write, kind: u32, body: &[u8]) -> io::Result<()> {
    let total = (12 + body.len()) as u32;
    out.write_all(&kind.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&total.to_le_bytes())
}

#[cfg(test)]
mod tests;
