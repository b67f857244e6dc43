//! A real Docker daemon (Debian's docker.io) for tests, kept off the machine's own network: it
//! runs in a network namespace of the test's (its docker0, its iptables chains, its
//! containers' veths all live there), entered with nsenter so that it still sees the
//! machine's cgroups (`ip netns exec` would remount /sys). Containers run a local image made
//! from busybox-static: no registry is needed. Everything is removed on drop.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{run, Netns};

const SOCKET: &str = "/run/tracer-test-docker.sock";
const IMAGE: &str = "tracer-busybox:1";

/// Applets the image links to busybox.
const APPLETS: &[&str] = &[
    "sh", "httpd", "nc", "sleep", "cat", "printf", "ping", "head",
];

/// The size of the image's `/www/big`.
pub const BIG_PAGE: usize = 20000;

/// Docker's host on its uplink, and another host beyond it (a namespace of the test's).
pub const UPLINK: &str = "10.203.0.1";
pub const OUTSIDE: &str = "10.203.0.2";

pub struct Docker {
    /// The namespace Docker calls the host.
    pub host: Netns,
    /// Another host, on the host's uplink (`up0` there, `out0` here).
    pub outside: Netns,
    daemon: Child,
    containers: Vec<String>,
}

/// Where `tool` is installed, if it is.
fn which(tool: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Fails loudly when a tool the Docker tests need is missing: they are not skipped.
fn require(tool: &str, package: &str) -> String {
    which(tool).unwrap_or_else(|| {
        panic!(
            "{tool} is not installed: the Docker tests need Debian's {package} (cargo xtask \
             setup installs it)"
        )
    })
}

impl Docker {
    pub fn start() -> Docker {
        require("dockerd", "docker.io");
        require("docker", "docker.io");
        require("busybox", "busybox-static");
        // A daemon left by a killed test run holds the socket and the state directories.
        let _ = run("pkill -f tracer-test-docker.sock");
        let host = Netns::new("dock");
        let outside = Netns::new("out");
        crate::veth(
            &host,
            ("up0", &format!("{UPLINK}/24")),
            &outside,
            ("out0", &format!("{OUTSIDE}/24")),
        );
        let daemon = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", host.name))
            .args(["dockerd", "-H", &format!("unix://{SOCKET}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start dockerd");
        let mut docker = Docker {
            host,
            outside,
            daemon,
            containers: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker.cli(&["info"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 60 s"
            );
            if let Ok(Some(status)) = docker.daemon.try_wait() {
                panic!("dockerd exited ({status})");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        docker.import_image();
        docker
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(["-H", &format!("unix://{SOCKET}")])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run docker")
    }

    /// Runs the docker client; fails the test if it fails.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A root file system of busybox-static and a few links, imported as an image.
    fn import_image(&self) {
        // Imported again each time (a second or two): an image left by an older run could
        // hold other files.
        let root = crate::scratch("busybox-root");
        // A scratch name repeats when a pid does: an older run's tree may be there.
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("www")).unwrap();
        std::fs::copy(
            require("busybox", "busybox-static"),
            root.join("bin/busybox"),
        )
        .unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        std::fs::write(root.join("www/index.html"), "hello from web\n").unwrap();
        // A page larger than a segment: its reply fills full-size segments.
        std::fs::write(root.join("www/big"), vec![b'b'; BIG_PAGE]).unwrap();
        let out = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "tar -C {} -c . | docker -H unix://{SOCKET} import - {IMAGE}",
                    root.display()
                ),
            ])
            .output()
            .expect("import");
        let _ = std::fs::remove_dir_all(&root);
        assert!(
            out.status.success(),
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a container of the test image named `name`, running `command`.
    pub fn run(&mut self, name: &str, command: &[&str]) -> Container {
        self.run_with(name, &[], command)
    }

    /// The same with `docker run` options (`-p 8080:80`).
    pub fn run_with(&mut self, name: &str, options: &[&str], command: &[&str]) -> Container {
        let _ = self.cli(&["rm", "-f", name]);
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(options);
        args.push(IMAGE);
        args.extend(command);
        self.docker(&args);
        self.containers.push(name.to_string());
        let ip = self.docker(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", name]);
        let iflink = self.docker(&["exec", name, "cat", "/sys/class/net/eth0/iflink"]);
        // The host side of the container's veth: the interface of the daemon's namespace whose
        // index is the container's eth0's peer.
        let host_veth = self
            .host
            .sh("ls /sys/class/net")
            .split_whitespace()
            .find(|ifname| {
                self.host
                    .run(&format!("cat /sys/class/net/{ifname}/ifindex"))
                    .stdout
                    .trim_ascii()
                    == iflink.as_bytes()
            })
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no host side for {name}'s eth0 (peer {iflink})"));
        Container {
            name: name.to_string(),
            ip,
            host_veth,
        }
    }

    /// Runs `command` in container `name`; returns its output, whatever its exit status.
    pub fn exec(&self, name: &str, command: &[&str]) -> std::process::Output {
        let mut args = vec!["exec", name];
        args.extend(command);
        self.cli(&args)
    }
}

pub struct Container {
    pub name: String,
    pub ip: String,
    /// Its veth's name in the daemon's namespace (`vethab12cd3`).
    pub host_veth: String,
}

impl Drop for Docker {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = self.cli(&["rm", "-f", name]);
        }
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.daemon.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
