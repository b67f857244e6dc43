//! The kernel's event ring buffer, read from its mapping with the reader's position told to
//! the kernel once per batch of records, not after each one.
//!
//! A BPF program reserving a record reads the reader's position, and so does every commit:
//! written after each record (as aya's `RingBuf` and libbpf do), that word's cache line moves
//! between the reading CPU and every CPU making events, twice per event. Told every
//! [`PUBLISH_DIVISOR`]th of the ring, the producers find the space of up to that much already
//! read as still taken: a ring a sixteenth smaller, in exchange.
//!
//! The layout is the kernel's (kernel/bpf/ringbuf.c): a page with the consumer position,
//! which the reader writes; a page with the producer position, then the data pages mapped
//! twice in a row, so that a record that wraps reads as one slice. Each record starts with an
//! 8-byte header: its length with a busy and a discard bit, and an offset for the kernel.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, RawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicUsize, Ordering},
};

use aya::maps::MapData;

const HEADER_BYTES: usize = 8;
const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;

/// The reader's position is told to the kernel every time this fraction of the ring was read
/// since it last was, and whenever the reader finds the ring empty.
const PUBLISH_DIVISOR: usize = 16;

pub struct EventRing {
    /// Owns the map's fd, which the mappings and the poll registration use.
    map: MapData,
    consumer: Mapping,
    /// The producer page followed by the data pages, twice.
    producer: Mapping,
    page_size: usize,
    mask: usize,
    /// Read up to here.
    pos: usize,
    /// Told to the kernel up to here.
    published: usize,
    /// The producers had written up to here when last looked.
    written: usize,
    publish_every: usize,
}

impl EventRing {
    pub fn new(map: MapData) -> io::Result<EventRing> {
        let size = map.info().map_err(io::Error::other)?.max_entries() as usize;
        if !size.is_power_of_two() {
            return Err(io::Error::other(format!(
                "the event ring's size ({size} bytes) is not a power of two"
            )));
        }
        // SAFETY: sysconf has no preconditions.
        let page_size = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::other("no page size"))?;
        let fd = map.fd().as_fd().as_raw_fd();
        let consumer = Mapping::new(fd, page_size, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = Mapping::new(fd, page_size + 2 * size, libc::PROT_READ, page_size)?;
        // The position a reader before this one left (the kernel starts it at 0).
        let pos = consumer.word().load(Ordering::Acquire);
        Ok(EventRing {
            map,
            consumer,
            producer,
            page_size,
            mask: size - 1,
            pos,
            published: pos,
            written: pos,
            publish_every: (size / PUBLISH_DIVISOR).max(HEADER_BYTES),
        })
    }

    /// The next record committed, if there is one. Its bytes stay where they are (the kernel
    /// writes no record there) until the position after it is published, which a later call
    /// does: the slice's borrow ends before then.
    pub fn next(&mut self) -> Option<&[u8]> {
        loop {
            if self.pos - self.published >= self.publish_every {
                self.publish();
            }
            if self.pos == self.written {
                // Read only when caught up: producers write that word at every reserve.
                self.written = self.producer.word().load(Ordering::Acquire);
                if self.pos == self.written {
                    self.publish();
                    return None;
                }
            }
            let offset = self.pos & self.mask;
            // SAFETY: the header is inside the first copy of the data pages (offset < size),
            // 8-byte aligned as every record is; the kernel writes it with atomic operations.
            let header = unsafe {
                &*self
                    .producer
                    .at(self.page_size + offset)
                    .cast::<AtomicU32>()
            };
            let header = header.load(Ordering::Acquire);
            if header & BUSY_BIT != 0 {
                // Reserved, not yet committed: the records after it wait for it.
                self.publish();
                return None;
            }
            let len = (header & !(BUSY_BIT | DISCARD_BIT)) as usize;
            let start = self.page_size + offset + HEADER_BYTES;
            self.pos += (HEADER_BYTES + len).next_multiple_of(8);
            if header & DISCARD_BIT == 0 {
                // SAFETY: a committed record of `len` bytes; the data pages are mapped twice,
                // so it is whole even where it wraps; nothing writes it until published.
                return Some(unsafe { std::slice::from_raw_parts(self.producer.at(start), len) });
            }
        }
    }

    /// Tells the kernel the space read so far is free.
    fn publish(&mut self) {
        if self.published != self.pos {
            self.consumer.word().store(self.pos, Ordering::Release);
            self.published = self.pos;
        }
    }
}

impl AsRawFd for EventRing {
    fn as_raw_fd(&self) -> RawFd {
        self.map.fd().as_fd().as_raw_fd()
    }
}

/// One `mmap` of the map's fd, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: RawFd, len: usize, prot: libc::c_int, offset: usize) -> io::Result<Mapping> {
        let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: a fresh shared mapping of the map's fd; the kernel checks the length, the
        // offset and the protection against the ring's layout.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }

    fn at(&self, offset: usize) -> *const u8 {
        debug_assert!(offset < self.len);
        // SAFETY: callers stay inside the mapping.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// The position word at the mapping's start.
    fn word(&self) -> &AtomicUsize {
        // SAFETY: a page-aligned mapping of at least a page; the kernel keeps the position
        // there and updates it atomically.
        unsafe { &*self.ptr.as_ptr().cast::<AtomicUsize>() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
