//! Network namespaces: naming them as users do (`/run/netns` names, paths, `pid:N`), knowing
//! them by inode as the kernel programs do, and running code inside one.

use crate::kernel::containers::{self, StateDirs};
use std::{
    collections::HashMap,
    ffi::CStr,
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

pub const NETNS_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("unknown network namespace '{0}' (not a name in {NETNS_DIR}, a running container's name or id, a path, or pid:N)")]
    Unknown(String),
    #[error("{0}")]
    Ambiguous(String),
    #[error("cannot enter network namespace '{name}'")]
    Enter {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace '{0}': that needs root or CAP_SYS_ADMIN")]
    NotPermitted(String),
    #[error("cannot open network namespace '{0}' ({1}): permission denied (another user's process needs root, or CAP_SYS_PTRACE)")]
    Unreadable(String, String),
}

/// A network namespace held open, so it stays the same one while we use it.
#[derive(Debug)]
pub struct Netns {
    /// The name under /run/netns, or `None` (the tracer's own namespace, a path, a pid).
    pub name: Option<String>,
    /// The inode of the namespace, as the kernel programs report it.
    pub inode: u32,
    /// Where it was found, to find it again (see [`NetnsRef`]).
    path: PathBuf,
    file: File,
}

/// A namespace remembered by where it was found, not held open. Holding its file for the
/// whole trace would keep a namespace that `ip netns del` removed alive, with its interfaces
/// and their veth peers, until the tracer exits: the tracer would change the network.
#[derive(Debug, Clone)]
pub struct NetnsRef {
    path: PathBuf,
    pub inode: u32,
    pub display_name: String,
}

impl NetnsRef {
    /// The same namespace, if it still exists (the path may now name another one).
    pub fn reopen(&self) -> Option<Netns> {
        let file = File::open(&self.path).ok()?;
        let inode = file.metadata().ok()?.ino() as u32;
        (inode == self.inode).then(|| Netns {
            name: None,
            inode,
            path: self.path.clone(),
            file,
        })
    }
}

impl Netns {
    /// `NAME` (under /run/netns, else a running Docker, Podman or containerd container's name
    /// or id), a path to an nsfs file, `pid:N`, or `.` for our own.
    pub fn open(spec: &str) -> Result<Netns, NetnsError> {
        let named = Path::new(NETNS_DIR).join(spec);
        let (path, name) = if spec == "." {
            (PathBuf::from("/proc/self/ns/net"), None)
        } else if let Some(pid) = spec.strip_prefix("pid:") {
            (PathBuf::from(format!("/proc/{pid}/ns/net")), None)
        } else if spec.contains('/') {
            (PathBuf::from(spec), None)
        } else if named.exists() {
            (named, Some(spec.to_string()))
        } else {
            match containers::find(spec, &StateDirs::default()).map_err(NetnsError::Ambiguous)? {
                Some(c) => (
                    PathBuf::from(format!("/proc/{}/ns/net", c.pid)),
                    Some(c.name),
                ),
                None => return Err(NetnsError::Unknown(spec.to_string())),
            }
        };
        let file = File::open(&path).map_err(|e| match e.kind() {
            // The namespace exists (`pid:1`), this process may not open it: say so, not
            // "unknown".
            std::io::ErrorKind::PermissionDenied => {
                NetnsError::Unreadable(spec.to_string(), path.display().to_string())
            }
            _ => NetnsError::Unknown(spec.to_string()),
        })?;
        let inode = file
            .metadata()
            .map_err(|_| NetnsError::Unknown(spec.to_string()))?
            .ino() as u32;
        let name = name.or_else(|| names().remove(&inode));
        Ok(Netns {
            name,
            inode,
            path,
            file,
        })
    }

    /// The namespace at `path`, if it is still the one of inode `inode`, called `name`.
    pub fn at(path: &Path, inode: u32, name: &str) -> Option<Netns> {
        let file = File::open(path).ok()?;
        (file.metadata().ok()?.ino() as u32 == inode).then(|| Netns {
            name: Some(name.to_string()),
            inode,
            path: path.to_path_buf(),
            file,
        })
    }

    /// The id the calling thread's namespace gives this one (`ip netns list-id`), if any: how
    /// a veth there names the namespace of its peer (`IFLA_LINK_NETNSID`).
    pub fn id_here(&self) -> Option<i32> {
        crate::kernel::nsid::nsid_of(self.file.as_raw_fd())
    }

    /// How to find this namespace again, without holding it.
    pub fn reference(&self) -> NetnsRef {
        NetnsRef {
            display_name: self.display_name(),
            path: self.path.clone(),
            inode: self.inode,
        }
    }

    /// Lets go of the namespace, remembering how to find it again.
    pub fn remember(self) -> NetnsRef {
        self.reference()
    }

    /// A new namespace of our own, with nothing but its loopback interface; it lives as long
    /// as the returned value (`tracer doctor` tries its programs there, touching no other).
    pub fn private() -> Result<Netns, NetnsError> {
        let created = std::thread::spawn(|| -> std::io::Result<File> {
            // SAFETY: affects only this thread, which ends after opening its namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            File::open("/proc/thread-self/ns/net")
        })
        .join()
        .expect("namespace creator panicked");
        let file = created.map_err(|source| NetnsError::Enter {
            name: "a new namespace".into(),
            source,
        })?;
        let inode = file.metadata().map(|m| m.ino() as u32).unwrap_or(0);
        Ok(Netns {
            name: Some("a private namespace".into()),
            inode,
            path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            file,
        })
    }

    /// The namespaces a trace's `-n` specs name, each once: none means our own, `all` every
    /// one ([`Netns::all`]).
    pub fn open_specs(specs: &[String]) -> Result<Vec<Netns>, NetnsError> {
        if specs.is_empty() {
            return Ok(vec![Netns::open(".")?]);
        }
        if specs.iter().any(|s| s == "all") {
            return Netns::all();
        }
        let mut out: Vec<Netns> = Vec::new();
        for spec in specs {
            let ns = Netns::open(spec)?;
            if !out.iter().any(|n| n.inode == ns.inode) {
                out.push(ns);
            }
        }
        Ok(out)
    }

    /// Every named namespace and our own.
    pub fn all() -> Result<Vec<Netns>, NetnsError> {
        let mut all = vec![Netns::open(".")?];
        let mut named: Vec<_> = names().into_values().collect();
        named.sort();
        for name in named {
            if let Ok(ns) = Netns::open(&name) {
                if ns.inode != all[0].inode {
                    all.push(ns);
                }
            }
        }
        Ok(all)
    }

    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("netns:{}", self.inode))
    }

    /// Moves the calling thread into this namespace.
    fn enter(&self) -> Result<(), NetnsError> {
        // SAFETY: setns on a valid nsfs fd; affects only this thread.
        if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
            return Ok(());
        }
        let source = std::io::Error::last_os_error();
        Err(match source.raw_os_error() {
            Some(libc::EPERM) => NetnsError::NotPermitted(self.display_name()),
            _ => NetnsError::Enter {
                name: self.display_name(),
                source,
            },
        })
    }

    /// Runs `f` on a thread that has entered this namespace; other threads stay where they are.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // Already there (our own namespace): setns would still want CAP_SYS_ADMIN.
                    if current_inode() != Some(self.inode) {
                        self.enter()?;
                    }
                    Ok(f())
                })
                .join()
                .expect("namespace worker panicked")
        })
    }
}

/// Inodes of the network namespaces that some process (other than this one) is in.
pub fn inodes_in_use() -> std::collections::HashSet<u32> {
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Default::default();
    };
    procs
        .flatten()
        .filter(|p| p.file_name() != me.as_str())
        .filter_map(|p| std::fs::metadata(p.path().join("ns/net")).ok())
        .map(|meta| meta.ino() as u32)
        .collect()
}

/// The inode of the calling thread's network namespace.
fn current_inode() -> Option<u32> {
    let meta = std::fs::metadata("/proc/thread-self/ns/net").ok()?;
    Some(meta.ino() as u32)
}

/// Inode -> name of the namespaces the user knows by a name: "host", containers, /run/netns.
pub fn names() -> HashMap<u32, String> {
    named_paths()
        .into_iter()
        .map(|(inode, (name, _))| (inode, name))
        .collect()
}

/// Inode -> (name, where to open it) of the namespaces the user knows by a name.
pub fn named_paths() -> HashMap<u32, (String, PathBuf)> {
    let mut names = HashMap::new();
    let mut add = |path: String, name: String| {
        if let Some(inode) = inode_of(&path) {
            names.insert(inode, (name, PathBuf::from(path)));
        }
    };
    // The machine's own namespace (pid 1's) is "host" to a container user. Where pid 1 is
    // out of reach (a sandbox), the tracer's own namespace stands for it, unless it has a name
    // under /run/netns (`ip netns exec NAME tracer`), which wins below.
    let host = ["/proc/1/ns/net", "/proc/self/ns/net"]
        .into_iter()
        .find(|path| inode_of(path).is_some());
    if let Some(path) = host {
        add(path.to_string(), "host".to_string());
    }
    // A container's name, unless a namespace of the same inode has a name under /run/netns.
    for c in containers::running(&StateDirs::default()) {
        add(format!("/proc/{}/ns/net", c.pid), c.name);
    }
    for (_, name) in named() {
        add(format!("{NETNS_DIR}/{name}"), name);
    }
    names
}

/// The namespaces named under /run/netns (`ip netns add`), by inode.
pub fn named() -> HashMap<u32, String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return HashMap::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let inode = inode_of(&entry.path().to_string_lossy())?;
            Some((inode, entry.file_name().to_string_lossy().into_owned()))
        })
        .collect()
}

fn inode_of(path: &str) -> Option<u32> {
    Some(std::fs::metadata(path).ok()?.ino() as u32)
}

/// (ifindex, name) of the interfaces of the calling thread's namespace.
pub fn interfaces() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    // SAFETY: if_nameindex returns null or an array ended by an entry of index 0, each other
    // entry's name a C string; it is only read up to that entry, names copied out, and freed
    // once, after the last read.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return out;
        }
        let mut entry = list;
        while (*entry).if_index != 0 {
            let name = CStr::from_ptr((*entry).if_name)
                .to_string_lossy()
                .into_owned();
            out.push(((*entry).if_index, name));
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    out
}
