//! The `clickstamp` binary.

// A request allocates many small, short-lived buffers across worker threads; mimalloc's
// thread-local free lists make that markedly cheaper than glibc's malloc (measured with
// `bench/run`; the bare Pingora yardstick uses it too, so ratios stay fair).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    clickstamp::cli::main()
}
