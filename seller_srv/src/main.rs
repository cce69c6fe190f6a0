//! `seller_srv`: the seller server binary. See `--help` for its flags.

use std::process::ExitCode;
use std::time::Duration;
use store::DbSettings;

fn main() -> ExitCode {
    net::settings::main(
        seller_srv::NAME,
        seller_srv::DEFAULT_LISTEN,
        DbSettings::ENV,
        DbSettings::USAGE,
        |settings, args| {
            let db = DbSettings::from_args(args, settings.reactor.workers)?;
            seller_srv::prepare(settings, &db, Duration::from_secs(30))
        },
    )
}
