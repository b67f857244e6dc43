//! Developer and CI entry points: `cargo xtask setup|build|run|test|bench|soak|vm`.
//!
//! `run` and `test` are the README's two commands. Both install what is missing first, so a
//! fresh machine needs nothing but this checkout and a Rust toolchain.

mod bench;
mod build;
mod cmd;
mod fuzz;
mod proc_status;
mod run;
mod setup;
mod soak;
mod test;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, run and test tracer")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install every missing prerequisite (Debian packages, bpf-linker, eBPF toolchain link).
    Setup,
    /// Set up, then build the tracer with its embedded eBPF object.
    Build {
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
    },
    /// Set up, build, then run the tracer: by default the smallest lab.
    Run {
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
        /// Arguments passed to the tracer instead of the default lab (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up, build, then run every test: unit tests, then privileged integration tests.
    Test(test::TestArgs),
    /// Fuzz the packet parser, the filter interpreter (against libpcap), event decoding and
    /// recordings: their property tests with many cases for about --seconds in all (no root).
    Fuzz(fuzz::FuzzArgs),
    /// Set up, build (release), then measure the tracer's cost beside a baseline and tcpdump
    /// (root): datapath, event pipeline, memory, attach time. Writes target/bench/.
    Bench(bench::BenchArgs),
    /// Set up, build (release), then run the tracer for a long time (root): mixed traffic,
    /// namespaces and interfaces deleted under it; memory, descriptors and programs sampled,
    /// leftovers checked. Writes target/bench/soak.md and soak.json; fails on a crash or leak.
    Soak(soak::SoakArgs),
    /// Run one command in another Debian kernel (6.1, 6.12) under qemu, with the host's files:
    /// `cargo xtask vm --kernel 6.1 -- target/release/tracer doctor`. Exits with its status.
    Vm(vm::VmArgs),
    /// Set up, build, then the kernel matrix alone (root): doctor and a set of labs in each
    /// older kernel under qemu, with a table (also the last step of `test`).
    Kernels,
    /// One-datagram flows at a steady rate (run by `bench` and `soak` inside a namespace).
    #[command(hide = true)]
    Flood {
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long)]
        rate: u64,
        #[arg(long)]
        seconds: u64,
    },
    /// 64-byte datagrams as fast as one CPU sends them (run by `bench` inside a namespace).
    #[command(hide = true)]
    UdpBlast {
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long)]
        seconds: u64,
    },
    /// A UDP receiver that polls and never sleeps (run by `bench` inside a namespace).
    #[command(hide = true)]
    UdpSink {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        seconds: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run(),
        Command::Build { release } => setup::run().and_then(|()| build::tracer(release).map(drop)),
        Command::Run { release, args } => run::run(release, &args),
        Command::Test(args) => test::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Soak(args) => soak::run(&args),
        Command::Vm(args) => vm::run(&args),
        Command::Kernels => test::kernels(),
        Command::Flood { to, rate, seconds } => bench::flood::run(to, rate, seconds),
        Command::UdpBlast { to, seconds } => bench::polled::blast(to, seconds),
        Command::UdpSink { port, seconds } => bench::polled::sink(port, seconds),
    };
    if let Err(err) = result {
        eprintln!("xtask: {err:#}");
        std::process::exit(1);
    }
}
