//! The `ferry` binary: everything lives in the library; see `ferry --help`.

fn main() {
    // Parts are buffers of 5-64 MiB, allocated and freed all run long. glibc raises its mmap
    // threshold to the size of the last mmapped block freed (up to 32 MiB), after which part
    // buffers come from the heap arenas, fragment, and are not returned to the system: peak RSS
    // measured 153 MiB against a 128 MiB part budget copying one 300 MiB file, 129 MiB with a
    // fixed threshold (tests/cli.rs::large_object_local_to_local_stays_under_150_mib). A fixed
    // threshold keeps every block of 4 MiB or more mmapped and unmapped when freed.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing, before any thread exists; mallopt only sets a parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
    std::process::exit(ferry::cli::main());
}
