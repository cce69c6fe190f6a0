//! `seller_srv`: the seller server binary. See `--help` for its flags.

fn main() -> std::process::ExitCode {
    server::main(&seller_srv::SIDE, std::env::args_os().skip(1).collect())
}
