//! The `narward` command line: parses flags into validated options and calls the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
