//! The `klosetfs` binary: a thin shell over the library's CLI module.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
