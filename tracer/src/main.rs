//! `tracer`: follows packets through the Linux network stack and says where each one went,
//! where it died and whether tcpdump saw it. The work is in the library; this is its door.

fn main() -> std::process::ExitCode {
    tracer::cmd::main()
}
