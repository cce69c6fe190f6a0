//! `buyer_srv`: the buyer server binary. See `--help` for its flags.

fn main() -> std::process::ExitCode {
    buyer_srv::main_with(std::env::args_os().skip(1).collect())
}
