use super::*;

/// A state tree in a temp directory, with containers whose pid is this test process (alive)
/// or a pid that cannot be (stopped).
fn state(name: &str) -> (tempdir::Dir, StateDirs) {
    let dir = tempdir::Dir::new(name);
    let me = std::process::id();
    let docker = |id: &str, name: &str, running: bool| {
        let path = dir.path.join(format!("docker/containers/{id}"));
        std::fs::create_dir_all(&path).unwrap();
        let config = format!(
            r#"{{"ID":"{id}","Name":"/{name}","State":{{"Running":{running},"Pid":{me}}},"Config":{{}}}}"#
        );
        std::fs::write(path.join("config.v2.json"), config).unwrap();
    };
    docker("aaaa1111bbbb", "web", true);
    docker("aaaa2222cccc", "cli", true);
    docker("dddd3333eeee", "stopped", false);
    let podman = dir.path.join("podman/overlay-containers");
    std::fs::create_dir_all(&podman).unwrap();
    std::fs::write(
        podman.join("containers.json"),
        r#"[{"id":"ffff4444","names":["db"]},{"id":"gone5555","names":["old"]}]"#,
    )
    .unwrap();
    let userdata = dir.path.join("run/overlay-containers/ffff4444/userdata");
    std::fs::create_dir_all(&userdata).unwrap();
    std::fs::write(userdata.join("pidfile"), format!("{me}\n")).unwrap();
    for (ns, id, pid) in [
        ("moby", "aaaa1111bbbb", me),
        ("k8s.io", "9999abcd", me),
        ("k8s.io", "dead0000", u32::MAX),
    ] {
        let task = dir.path.join(format!("tasks/{ns}/{id}"));
        std::fs::create_dir_all(&task).unwrap();
        std::fs::write(task.join("init.pid"), pid.to_string()).unwrap();
    }
    let dirs = StateDirs {
        docker: dir.path.join("docker"),
        podman_storage: dir.path.join("podman"),
        podman_run: dir.path.join("run"),
        containerd_tasks: dir.path.join("tasks"),
    };
    (dir, dirs)
}

#[test]
fn running_containers_of_each_engine_are_found_once() {
    let (_dir, dirs) = state("running");
    let found: Vec<(&str, String)> = running(&dirs)
        .into_iter()
        .map(|c| (c.engine, c.name))
        .collect();
    assert_eq!(
        found,
        [
            ("docker", "web".to_string()),
            ("docker", "cli".to_string()),
            ("podman", "db".to_string()),
            ("containerd", "9999abcd".to_string()),
        ]
    );
}

#[test]
fn a_container_is_found_by_name_or_by_an_unambiguous_start_of_its_id() {
    let (_dir, dirs) = state("find");
    assert_eq!(find("web", &dirs).unwrap().unwrap().id, "aaaa1111bbbb");
    assert_eq!(find("aaaa2", &dirs).unwrap().unwrap().name, "cli");
    assert_eq!(find("db", &dirs).unwrap().unwrap().engine, "podman");
    assert_eq!(find("stopped", &dirs).unwrap(), None);
    assert_eq!(find("nothing", &dirs).unwrap(), None);
    let ambiguous = find("aaaa", &dirs).unwrap_err();
    assert!(ambiguous.contains("2 containers (web, cli)"), "{ambiguous}");
    // Too short to be an id: "a" could be anything.
    assert_eq!(find("a", &dirs).unwrap(), None);
}

#[test]
fn no_engine_means_no_containers() {
    let dirs = StateDirs {
        docker: "/nonexistent/docker".into(),
        podman_storage: "/nonexistent/p".into(),
        podman_run: "/nonexistent/r".into(),
        containerd_tasks: "/nonexistent/t".into(),
    };
    assert!(running(&dirs).is_empty());
}

/// A temporary directory removed on drop (no crate needed for one test helper).
mod tempdir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }

    impl Dir {
        pub fn new(name: &str) -> Dir {
            let path = std::env::temp_dir()
                .join(format!("tracer-containers-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
