//! Who holds an interface's XDP slot. Only one XDP program fits on an interface, so where
//! another tool's program sits, the tracer cannot put its own: it names that program instead,
//! because every packet that program drops vanishes before any other observation point.
//!
//! One rtnetlink `RTM_GETLINK` request for the interface, reading `IFLA_XDP` ->
//! `IFLA_XDP_PROG_ID`; then the program's name from the kernel's list of loaded programs.

use std::io;

const RTM_GETLINK: u16 = 18;
const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_PROG_ID: u16 = 4;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The XDP program on `ifindex` of the current thread's namespace: "NAME (id N)", or `None`.
pub fn xdp_program(ifindex: u32) -> io::Result<Option<String>> {
    let Some(id) = xdp_program_id(ifindex)? else {
        return Ok(None);
    };
    let name = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string))
        .unwrap_or_else(|| "an unnamed program".to_string());
    Ok(Some(format!("{name} (id {id})")))
}

pub fn xdp_program_id(ifindex: u32) -> io::Result<Option<u32>> {
    parse_reply(&getlink(ifindex)?)
}

/// The ifindex of the device `ifindex` is enslaved to (`IFLA_MASTER`: a bridge for a bridge
/// port), in the current thread's namespace.
pub fn master_ifindex(ifindex: u32) -> io::Result<Option<u32>> {
    const IFLA_MASTER: u16 = 10;
    let reply = getlink(ifindex)?;
    if reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]])) != Some(RTM_NEWLINK) {
        return Ok(None);
    }
    let master = attributes(reply.get(32..).unwrap_or_default())
        .find(|(kind, _)| *kind == IFLA_MASTER)
        .and_then(|(_, payload)| payload.get(..4))
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .filter(|master| *master != 0);
    Ok(master)
}

/// One `RTM_GETLINK` request for `ifindex`; the kernel's reply.
pub(crate) fn getlink(ifindex: u32) -> io::Result<Vec<u8>> {
    // nlmsghdr (16 bytes) + ifinfomsg (16 bytes).
    let mut request = [0u8; 32];
    request[0..4].copy_from_slice(&32u32.to_ne_bytes());
    request[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    request[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    request[20..24].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    rtnetlink(&request)
}

/// Sends one rtnetlink request from the calling thread's namespace; the kernel's reply.
pub(crate) fn rtnetlink(request: &[u8]) -> io::Result<Vec<u8>> {
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open, and nothing else owns it: the
    // `OwnedFd` becomes its one owner and closes it on every path.
    let socket = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&socket);
    // SAFETY: sending a buffer we own; the kernel is the default destination of a netlink socket.
    if unsafe { libc::send(raw, request.as_ptr().cast(), request.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = vec![0u8; 64 * 1024];
    // SAFETY: receiving into a buffer we own, of the length given.
    let n = unsafe { libc::recv(raw, reply.as_mut_ptr().cast(), reply.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    reply.truncate(n as usize);
    Ok(reply)
}

/// Finds `IFLA_XDP_PROG_ID` in an `RTM_NEWLINK` reply.
fn parse_reply(reply: &[u8]) -> io::Result<Option<u32>> {
    let u16_at = |at: usize| {
        reply
            .get(at..at + 2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
    };
    let msg_type = u16_at(4).unwrap_or(0);
    if msg_type == NLMSG_ERROR {
        let errno = reply
            .get(16..20)
            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        return Err(io::Error::from_raw_os_error(-errno));
    }
    if msg_type != RTM_NEWLINK {
        return Ok(None);
    }
    let Some(xdp) = attributes(reply.get(32..).unwrap_or_default())
        .find(|(kind, _)| *kind == IFLA_XDP)
        .map(|(_, payload)| payload)
    else {
        return Ok(None);
    };
    Ok(attributes(xdp)
        .find(|(kind, _)| *kind == IFLA_XDP_PROG_ID)
        .and_then(|(_, payload)| payload.get(..4))
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .filter(|id| *id != 0))
}

/// The (type, payload) of each `rtattr` in `bytes` (4-byte aligned, as rtnetlink lays them out).
pub(crate) fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]) as usize;
        let kind = u16::from_ne_bytes([*bytes.get(2)?, *bytes.get(3)?]) & NLA_TYPE_MASK;
        if len < 4 || len > bytes.len() {
            return None;
        }
        let payload = &bytes[4..len];
        bytes = &bytes[((len + 3) & !3).min(bytes.len())..];
        Some((kind, payload))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 4) as u16).to_ne_bytes().to_vec();
        out.extend(kind.to_ne_bytes());
        out.extend(payload);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    }

    fn newlink(attrs: &[u8]) -> Vec<u8> {
        let mut msg = vec![0u8; 32];
        msg[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        msg.extend(attrs);
        msg
    }

    #[test]
    fn finds_the_program_id_nested_in_ifla_xdp() {
        let mut nested = attr(1, &[2]); // IFLA_XDP_ATTACHED
        nested.extend(attr(IFLA_XDP_PROG_ID, &77u32.to_ne_bytes()));
        let mut attrs = attr(3, b"vb\0"); // IFLA_IFNAME, odd length: padded
        attrs.extend(attr(IFLA_XDP | 0x8000, &nested)); // NLA_F_NESTED set
        assert_eq!(parse_reply(&newlink(&attrs)).unwrap(), Some(77));
    }

    #[test]
    fn no_xdp_attribute_means_no_program() {
        assert_eq!(parse_reply(&newlink(&attr(3, b"vb\0"))).unwrap(), None);
        assert_eq!(parse_reply(&newlink(&[1, 0])).unwrap(), None, "truncated");
    }
}
