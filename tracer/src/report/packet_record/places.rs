//! The parts of a packet record that repeat places, its path and its captures, written as
//! serde_json writes them (byte for byte: the unit test of the parent compares every fixture's
//! records) at a fraction of the cost: the keys and the hook, direction and position names are
//! plain identifiers written as they are, and the places (`"ifname":...,"netns":...,
//! "netns_name":...`, a veth's peer), the same few for all the points of a packet and of the
//! next ones, are escaped once and kept.

use std::{
    cell::RefCell,
    io::{self, Write},
};

use super::{CaptureRecord, PeerRecord, Point};
use crate::model::sighting::Name;

/// Places kept between records; past this many the cache starts over (a trace through many
/// interfaces only escapes their names again).
const PLACES_KEPT: usize = 64;

/// A place, as its fields are, and its fragment of JSON.
struct Place {
    ifname: Option<Name>,
    netns: u32,
    netns_name: Option<Name>,
    json: Vec<u8>,
}

/// A veth's other end and its JSON object.
struct Peer {
    ifname: String,
    netns_name: String,
    json: Vec<u8>,
}

/// Where a capture was, its veth's peer included, and its fragment of JSON.
struct CapturePlace {
    ifname: Option<Name>,
    netns_name: Option<Name>,
    peer: Option<(String, String)>,
    json: Vec<u8>,
}

#[derive(Default)]
struct Cache {
    places: Vec<Place>,
    peers: Vec<Peer>,
    captures: Vec<CapturePlace>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::default();
    /// Where a record is put together before it goes out in one write.
    static BUFFER: RefCell<Vec<u8>> = RefCell::default();
}

/// Runs `f` with this thread's record buffer, emptied.
pub(super) fn with_buffer<T>(f: impl FnOnce(&mut Vec<u8>) -> io::Result<T>) -> io::Result<T> {
    BUFFER.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        f(&mut buf)
    })
}

pub(super) fn write_captures(out: &mut Vec<u8>, captures: &[CaptureRecord]) -> io::Result<()> {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        for (i, c) in captures.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // The live captures listening there, rare, come between the names: serde's.
            if c.live.is_some() {
                serde_json::to_writer(&mut *out, c)?;
                continue;
            }
            out.extend_from_slice(b"{\"dir\":\"");
            out.extend_from_slice(c.dir.as_bytes());
            out.extend_from_slice(b"\",");
            if let Some(encapsulated) = c.encapsulated {
                out.extend_from_slice(b"\"encapsulated\":");
                serde_json::to_writer(&mut *out, encapsulated)?;
                out.push(b',');
            }
            out.extend_from_slice(cache.capture_place(c)?);
            out.extend_from_slice(if c.seen {
                b",\"seen\":true}"
            } else {
                b",\"seen\":false}"
            });
        }
        Ok(())
    })
}

pub(super) fn write_points(out: &mut Vec<u8>, points: &[Point]) -> io::Result<()> {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        for (i, point) in points.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_point(out, point, &mut cache)?;
        }
        Ok(())
    })
}

fn write_point(out: &mut Vec<u8>, p: &Point, cache: &mut Cache) -> io::Result<()> {
    out.write_all(b"{\"dir\":\"")?;
    out.write_all(p.dir.as_bytes())?;
    out.write_all(b"\",")?;
    if let Some(encapsulated) = &p.encapsulated {
        out.write_all(b"\"encapsulated\":")?;
        serde_json::to_writer(&mut *out, encapsulated)?;
        out.write_all(b",")?;
    }
    out.write_all(b"\"hook\":\"")?;
    out.write_all(p.hook.name().as_bytes())?;
    out.write_all(b"\",")?;
    out.write_all(cache.place(p)?)?;
    if let Some(note) = p.note {
        out.write_all(b",\"note\":")?;
        serde_json::to_writer(&mut *out, note)?;
    }
    if let Some(peer) = &p.peer {
        out.write_all(b",\"peer\":")?;
        out.write_all(cache.peer(peer)?)?;
    }
    if let Some(position) = p.position {
        out.write_all(b",\"position\":\"")?;
        out.write_all(position.as_bytes())?;
        out.write_all(b"\"")?;
    }
    out.write_all(b",\"ts_ns\":")?;
    serde_json::to_writer(&mut *out, &p.ts_ns)?;
    out.write_all(b"}")
}

impl Cache {
    /// `"ifname":"va","netns":4026532178,"netns_name":"a"`.
    fn place(&mut self, p: &Point) -> io::Result<&[u8]> {
        let found = self.places.iter().position(|k| {
            k.netns == p.netns && same(&k.ifname, p.ifname) && same(&k.netns_name, p.netns_name)
        });
        let at = match found {
            Some(at) => at,
            None => {
                if self.places.len() == PLACES_KEPT {
                    self.places.clear();
                }
                let mut json = b"\"ifname\":".to_vec();
                serde_json::to_writer(&mut json, p.ifname)?;
                json.extend_from_slice(b",\"netns\":");
                serde_json::to_writer(&mut json, &p.netns)?;
                json.extend_from_slice(b",\"netns_name\":");
                serde_json::to_writer(&mut json, p.netns_name)?;
                self.places.push(Place {
                    ifname: p.ifname.clone(),
                    netns: p.netns,
                    netns_name: p.netns_name.clone(),
                    json,
                });
                self.places.len() - 1
            }
        };
        Ok(&self.places[at].json)
    }

    /// `"ifname":"va","netns_name":"a","peer":{"ifname":"vb","netns_name":"b"}`.
    fn capture_place(&mut self, c: &CaptureRecord) -> io::Result<&[u8]> {
        let peer = c.peer.as_ref().map(|p| (p.ifname, p.netns_name));
        let found = self.captures.iter().position(|k| {
            same(&k.ifname, c.ifname)
                && same(&k.netns_name, c.netns_name)
                && k.peer.as_ref().map(|(i, n)| (i.as_str(), n.as_str())) == peer
        });
        let at = match found {
            Some(at) => at,
            None => {
                if self.captures.len() == PLACES_KEPT {
                    self.captures.clear();
                }
                let mut json = b"\"ifname\":".to_vec();
                serde_json::to_writer(&mut json, c.ifname)?;
                json.extend_from_slice(b",\"netns_name\":");
                serde_json::to_writer(&mut json, c.netns_name)?;
                if let Some(peer) = &c.peer {
                    json.extend_from_slice(b",\"peer\":");
                    serde_json::to_writer(&mut json, peer)?;
                }
                self.captures.push(CapturePlace {
                    ifname: c.ifname.clone(),
                    netns_name: c.netns_name.clone(),
                    peer: peer.map(|(i, n)| (i.to_string(), n.to_string())),
                    json,
                });
                self.captures.len() - 1
            }
        };
        Ok(&self.captures[at].json)
    }

    /// `{"ifname":"vb","netns_name":"b"}`.
    fn peer(&mut self, peer: &PeerRecord) -> io::Result<&[u8]> {
        let found = self
            .peers
            .iter()
            .position(|k| k.ifname == peer.ifname && k.netns_name == peer.netns_name);
        let at = match found {
            Some(at) => at,
            None => {
                if self.peers.len() == PLACES_KEPT {
                    self.peers.clear();
                }
                let json = serde_json::to_vec(peer)?;
                self.peers.push(Peer {
                    ifname: peer.ifname.to_string(),
                    netns_name: peer.netns_name.to_string(),
                    json,
                });
                self.peers.len() - 1
            }
        };
        Ok(&self.peers[at].json)
    }
}

/// Whether two names are the same: most often the same interned name, compared by address.
fn same(a: &Option<Name>, b: &Option<Name>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}
