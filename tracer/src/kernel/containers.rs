//! Containers by the names their users give them: Docker, Podman and containerd keep, for each
//! running container, its name or id and the pid of its first process, in files under their
//! state directories. Reading those files needs none of their tools at trace time, and the
//! pid's `/proc/PID/ns/net` is the container's network namespace.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// `docker`, `podman` or `containerd`.
    pub engine: &'static str,
    /// The name its user knows (`web`); containerd's tasks have only their id.
    pub name: String,
    pub id: String,
    pub pid: u32,
}

impl Container {
    /// Whether `spec` names this container: its name, or (at least 4 characters of) its id.
    fn is(&self, spec: &str) -> bool {
        self.name == spec || (spec.len() >= 4 && self.id.starts_with(spec))
    }
}

/// Where the engines keep their state; a test points it at a directory of its own.
pub struct StateDirs {
    pub docker: PathBuf,
    pub podman_storage: PathBuf,
    pub podman_run: PathBuf,
    pub containerd_tasks: PathBuf,
}

impl Default for StateDirs {
    fn default() -> StateDirs {
        StateDirs {
            docker: docker_root(),
            podman_storage: "/var/lib/containers/storage".into(),
            podman_run: "/run/containers/storage".into(),
            containerd_tasks: "/run/containerd/io.containerd.runtime.v2.task".into(),
        }
    }
}

/// Docker's data root: `data-root` of /etc/docker/daemon.json, else /var/lib/docker.
fn docker_root() -> PathBuf {
    #[derive(Deserialize)]
    struct Daemon {
        #[serde(rename = "data-root")]
        data_root: Option<PathBuf>,
    }
    std::fs::read_to_string("/etc/docker/daemon.json")
        .ok()
        .and_then(|text| serde_json::from_str::<Daemon>(&text).ok())
        .and_then(|d| d.data_root)
        .unwrap_or_else(|| "/var/lib/docker".into())
}

/// The running containers of every engine found, Docker's and Podman's first: containerd also
/// lists Docker's containers (by id, in its `moby` namespace), named better by Docker.
pub fn running(dirs: &StateDirs) -> Vec<Container> {
    let mut all = docker(&dirs.docker);
    all.extend(podman(&dirs.podman_storage, &dirs.podman_run));
    for task in containerd(&dirs.containerd_tasks) {
        if !all.iter().any(|c| c.id == task.id) {
            all.push(task);
        }
    }
    all
}

/// The container `spec` names, if exactly one does.
pub fn find(spec: &str, dirs: &StateDirs) -> Result<Option<Container>, String> {
    let all = running(dirs);
    if let Some(exact) = all.iter().find(|c| c.name == spec) {
        return Ok(Some(exact.clone()));
    }
    let matching: Vec<&Container> = all.iter().filter(|c| c.is(spec)).collect();
    match matching.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => Err(format!(
            "'{spec}' is the start of the ids of {} containers ({}): give more of it",
            many.len(),
            many.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// `containers/<id>/config.v2.json`: `{"ID": .., "Name": "/web", "State": {"Running", "Pid"}}`.
fn docker(root: &Path) -> Vec<Container> {
    #[derive(Deserialize)]
    struct State {
        #[serde(rename = "Running")]
        running: bool,
        #[serde(rename = "Pid")]
        pid: u32,
    }
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "ID")]
        id: String,
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "State")]
        state: State,
    }
    subdirs(&root.join("containers"))
        .into_iter()
        .filter_map(|dir| {
            let text = std::fs::read_to_string(dir.join("config.v2.json")).ok()?;
            let config: Config = serde_json::from_str(&text).ok()?;
            (config.state.running && config.state.pid > 0).then(|| Container {
                engine: "docker",
                name: config.name.trim_start_matches('/').to_string(),
                id: config.id,
                pid: config.state.pid,
            })
        })
        .collect()
}

/// `overlay-containers/containers.json` (`[{"id", "names"}]`) for names, and the running
/// container's `userdata/pidfile` under the run directory for its pid.
fn podman(storage: &Path, run: &Path) -> Vec<Container> {
    #[derive(Deserialize)]
    struct Entry {
        id: String,
        #[serde(default)]
        names: Vec<String>,
    }
    let Ok(text) = std::fs::read_to_string(storage.join("overlay-containers/containers.json"))
    else {
        return Vec::new();
    };
    let entries: Vec<Entry> = serde_json::from_str(&text).unwrap_or_default();
    entries
        .into_iter()
        .filter_map(|e| {
            let pidfile = run
                .join("overlay-containers")
                .join(&e.id)
                .join("userdata/pidfile");
            let pid = read_pid(&pidfile)?;
            Some(Container {
                engine: "podman",
                name: e.names.first().cloned().unwrap_or_else(|| e.id.clone()),
                id: e.id,
                pid,
            })
        })
        .collect()
}

/// `<namespace>/<id>/init.pid` of each running task.
fn containerd(tasks: &Path) -> Vec<Container> {
    subdirs(tasks)
        .iter()
        .flat_map(|namespace| subdirs(namespace))
        .filter_map(|task| {
            let pid = read_pid(&task.join("init.pid"))?;
            let id = task.file_name()?.to_string_lossy().into_owned();
            Some(Container {
                engine: "containerd",
                name: id.clone(),
                id,
                pid,
            })
        })
        .collect()
}

/// A pid file's pid, if that process is alive (a stopped container may leave its file).
fn read_pid(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    (pid > 0 && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}

#[cfg(test)]
mod tests;
