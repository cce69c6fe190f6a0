//! `buyer_srv`: the buyer server binary. See `--help` for its flags.

fn main() -> std::process::ExitCode {
    server::main(&buyer_srv::SIDE, std::env::args_os().skip(1).collect())
}
