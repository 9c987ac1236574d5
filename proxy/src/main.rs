//! The `clickstamp` binary.

fn main() -> std::process::ExitCode {
    clickstamp::cli::main()
}
