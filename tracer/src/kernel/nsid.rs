//! The ids a namespace gives other namespaces (`RTM_GETNSID`): how a veth's
//! `IFLA_LINK_NETNSID` is matched to a namespace the tracer knows.

use crate::kernel::xdp_owner;

pub const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const NLM_F_REQUEST: u16 = 1;
pub const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;

/// The id the calling thread's namespace gives the namespace of file descriptor `fd`; `None`
/// where it gave it none (no veth or tunnel links the two).
pub fn nsid_of(fd: i32) -> Option<i32> {
    // nlmsghdr (16 bytes) + rtgenmsg (1 byte, padded to 4) + NETNSA_FD (8 bytes).
    let mut request = [0u8; 28];
    request[0..4].copy_from_slice(&28u32.to_ne_bytes());
    request[4..6].copy_from_slice(&RTM_GETNSID.to_ne_bytes());
    request[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    request[20..22].copy_from_slice(&8u16.to_ne_bytes());
    request[22..24].copy_from_slice(&NETNSA_FD.to_ne_bytes());
    request[24..28].copy_from_slice(&(fd as u32).to_ne_bytes());
    parse_nsid(&xdp_owner::rtnetlink(&request).ok()?)
}

/// The id in an `RTM_NEWNSID` reply; `None` for an error or "not assigned" (-1).
pub fn parse_nsid(reply: &[u8]) -> Option<i32> {
    let msg_type = u16::from_ne_bytes([*reply.get(4)?, *reply.get(5)?]);
    if msg_type != RTM_NEWNSID {
        return None;
    }
    xdp_owner::attributes(reply.get(20..)?)
        .find(|(k, _)| *k == NETNSA_NSID)
        .and_then(|(_, p)| Some(i32::from_ne_bytes(p.get(..4)?.try_into().ok()?)))
        .filter(|id| *id >= 0)
}
