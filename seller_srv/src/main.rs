//! `seller_srv`: the seller server binary. See `--help` for its flags.

/// The servers allocate with mimalloc rather than glibc's malloc: a
/// password hash's 19 MiB of working memory is then reused by the next hash
/// instead of mapped and faulted afresh, and a request's buffers, rows and
/// JSON come and go a little faster (docs/BENCHMARKS.md, "The servers'
/// allocator"). Transparent huge pages are off (the crate's `no_thp`): with
/// them an idle server held ~60 MB more for ~5% less CPU. Set here, in the
/// binary, so that libraries and their tests keep the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    server::main(&seller_srv::SIDE, std::env::args_os().skip(1).collect())
}
