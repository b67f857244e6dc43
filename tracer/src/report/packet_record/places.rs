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

/// Where a point was, as its fields are.
struct Place {
    ifname: Option<Name>,
    netns: u32,
    netns_name: Option<Name>,
}

/// A veth's other end.
struct Peer {
    ifname: String,
    netns_name: String,
}

/// Where a capture was, its veth's peer included.
struct CapturePlace {
    ifname: Option<Name>,
    netns_name: Option<Name>,
    peer: Option<(String, String)>,
}

/// Fragments of JSON kept by what they were made of.
struct Kept<K>(Vec<(K, Vec<u8>)>);

impl<K> Default for Kept<K> {
    fn default() -> Self {
        Kept(Vec::new())
    }
}

impl<K> Kept<K> {
    /// The fragment of the key `matches` finds, made (with its key) if there is none yet.
    fn get(
        &mut self,
        matches: impl Fn(&K) -> bool,
        make: impl FnOnce() -> io::Result<(K, Vec<u8>)>,
    ) -> io::Result<&[u8]> {
        let at = match self.0.iter().position(|(k, _)| matches(k)) {
            Some(at) => at,
            None => {
                if self.0.len() == PLACES_KEPT {
                    self.0.clear();
                }
                self.0.push(make()?);
                self.0.len() - 1
            }
        };
        Ok(&self.0[at].1)
    }
}

#[derive(Default)]
struct Cache {
    places: Kept<Place>,
    peers: Kept<Peer>,
    captures: Kept<CapturePlace>,
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
        self.places.get(
            |k| {
                k.netns == p.netns && same(&k.ifname, p.ifname) && same(&k.netns_name, p.netns_name)
            },
            || {
                let mut json = b"\"ifname\":".to_vec();
                serde_json::to_writer(&mut json, p.ifname)?;
                json.extend_from_slice(b",\"netns\":");
                serde_json::to_writer(&mut json, &p.netns)?;
                json.extend_from_slice(b",\"netns_name\":");
                serde_json::to_writer(&mut json, p.netns_name)?;
                let key = Place {
                    ifname: p.ifname.clone(),
                    netns: p.netns,
                    netns_name: p.netns_name.clone(),
                };
                Ok((key, json))
            },
        )
    }

    /// `"ifname":"va","netns_name":"a","peer":{"ifname":"vb","netns_name":"b"}`.
    fn capture_place(&mut self, c: &CaptureRecord) -> io::Result<&[u8]> {
        let peer = c.peer.as_ref().map(|p| (p.ifname, p.netns_name));
        self.captures.get(
            |k| {
                same(&k.ifname, c.ifname)
                    && same(&k.netns_name, c.netns_name)
                    && k.peer.as_ref().map(|(i, n)| (i.as_str(), n.as_str())) == peer
            },
            || {
                let mut json = b"\"ifname\":".to_vec();
                serde_json::to_writer(&mut json, c.ifname)?;
                json.extend_from_slice(b",\"netns_name\":");
                serde_json::to_writer(&mut json, c.netns_name)?;
                if let Some(peer) = &c.peer {
                    json.extend_from_slice(b",\"peer\":");
                    serde_json::to_writer(&mut json, peer)?;
                }
                let key = CapturePlace {
                    ifname: c.ifname.clone(),
                    netns_name: c.netns_name.clone(),
                    peer: peer.map(|(i, n)| (i.to_string(), n.to_string())),
                };
                Ok((key, json))
            },
        )
    }

    /// `{"ifname":"vb","netns_name":"b"}`.
    fn peer(&mut self, peer: &PeerRecord) -> io::Result<&[u8]> {
        self.peers.get(
            |k| k.ifname == peer.ifname && k.netns_name == peer.netns_name,
            || {
                let key = Peer {
                    ifname: peer.ifname.to_string(),
                    netns_name: peer.netns_name.to_string(),
                };
                Ok((key, serde_json::to_vec(peer)?))
            },
        )
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
