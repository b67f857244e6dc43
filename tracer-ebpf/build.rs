//! Rebuild when bpf-linker changes (a new linker can produce a different object), and link
//! with memset and memcpy written out as stores.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    // bpf-linker asks LLVM to expand memcpy "in order" (for JITs that match copy patterns),
    // which also turns off LLVM's own expansion of memset: every zeroed struct became a call
    // to the compiler-builtins memset, a loop storing one byte at a time (4 instructions a
    // byte; each netfilter program zeroed 105 bytes that way before its filter ran). Without
    // it LLVM writes both as a few word stores.
    println!("cargo:rustc-link-arg=--disable-expand-memcpy-in-order");
}
