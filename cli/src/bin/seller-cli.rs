//! `seller-cli`: the seller's line-editor client. See `--help`.

fn main() -> std::process::ExitCode {
    cli::shell::main(&cli::seller::SIDE)
}
