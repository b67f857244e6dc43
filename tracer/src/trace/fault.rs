//! Deliberate faults for the tests of clean exits: `TRACER_INJECT_PANIC=attach` panics in the
//! middle of attaching (some programs attached, others not), `=tracing` once tracing runs.
//! Only builds with the `fault-injection` feature have them (`cargo xtask test` builds the
//! tracer it tests so); any other build, the one installed and run as root included, ignores
//! the variable. The tests show that a crash at either moment leaves nothing of the tracer in
//! the kernel.

/// Panics when `TRACER_INJECT_PANIC` names this point, half a second after getting there, so
/// that a test watching the process sees what it holds at that moment.
#[track_caller]
#[cfg(feature = "fault-injection")]
pub fn panic_point(point: &str) {
    if std::env::var("TRACER_INJECT_PANIC").is_ok_and(|wanted| wanted == point) {
        std::thread::sleep(std::time::Duration::from_millis(500));
        panic!("injected fault at '{point}' (TRACER_INJECT_PANIC)");
    }
}

/// Builds without the `fault-injection` feature carry no fault injection.
#[cfg(not(feature = "fault-injection"))]
pub fn panic_point(_point: &str) {}

/// Replaces the default panic report (a message and a hint about backtraces) with one
/// sentence that says it is the tracer's fault and where, and that nothing stays attached.
pub fn install_panic_report() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "tracer: internal error{location}: {message}; nothing stays attached (please report this)"
        );
    }));
}
