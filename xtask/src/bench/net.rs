//! The benchmark's throwaway network: two namespaces joined by a veth pair, and the programs
//! (iperf3, tcpdump, the tracer) started inside them.

use std::{process::Stdio, thread::sleep, time::Duration};

use anyhow::{Context, Result};

pub use harness::{
    command_in, output,
    process::{interrupt, wait_for_file},
    sh, KillOnDrop,
};
use harness::{veth::Pair, End};

pub const CLIENT: &str = "xbench-a";
pub const SERVER: &str = "xbench-b";
pub const CLIENT_ADDR: &str = "10.203.0.1";
pub const SERVER_ADDR: &str = "10.203.0.2";

/// `CLIENT` (va) <-> `SERVER` (vb), removed on drop.
pub fn pair() -> Result<Pair> {
    let (client, server) = (format!("{CLIENT_ADDR}/24"), format!("{SERVER_ADDR}/24"));
    Pair::create(
        &End {
            netns: CLIENT,
            ifname: "va",
            addrs: &[&client],
        },
        &End {
            netns: SERVER,
            ifname: "vb",
            addrs: &[&server],
        },
    )
}

/// `iperf3 -s` in the server namespace, for as long as the returned guard lives; `prefix`
/// goes before it (`taskset -c 0 `).
pub fn iperf_server(prefix: &str) -> Result<KillOnDrop> {
    let child = command_in(SERVER, &format!("{prefix}iperf3 -s"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start iperf3 -s")?;
    sleep(Duration::from_millis(500));
    Ok(KillOnDrop(child))
}
