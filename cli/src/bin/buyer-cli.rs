//! `buyer-cli`: the buyer's line-editor client. See `--help`.

fn main() -> std::process::ExitCode {
    cli::shell::main(&cli::buyer::SIDE)
}
