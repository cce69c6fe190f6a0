//! `seller_srv`: the seller server binary. See `--help` for its flags.

fn main() -> std::process::ExitCode {
    seller_srv::main_with(std::env::args_os().skip(1).collect())
}
