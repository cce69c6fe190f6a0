//! The CLI at a real (pseudo-)terminal: the prompt shows who is logged in, the
//! password is asked for without echo, and command names complete with Tab.

mod support;

use rexpect::session::spawn_command;
use std::process::Command;
use support::*;

#[test]
fn login_with_a_no_echo_password_prompt_and_tab_completion() {
    let stack = stack();
    let home = deploy::testing::temp_dir("cli-home");
    let user = unique("pty");
    let mut command = Command::new(env!("CARGO_BIN_EXE_seller-cli"));
    command
        .args(["--server", &stack.seller_addr().to_string()])
        .env("XDG_DATA_HOME", &home)
        .env("TERM", "xterm");
    let mut p = spawn_command(command, Some(20_000)).expect("spawn under a pty");
    p.exp_string("seller> ").unwrap();
    p.send_line(&format!("create-account {user}")).unwrap();
    p.exp_string("Password: ").unwrap();
    p.send_line("s3cret-pw").unwrap();
    let echoed = p.exp_string("created").unwrap();
    assert!(
        !echoed.contains("s3cret-pw"),
        "the password was echoed: {echoed:?}"
    );
    p.exp_string("seller> ").unwrap();
    // "logi" + Tab must complete to "login " (without completion the line
    // would read "logi<user>", an unknown command, and no login would follow).
    p.send("logi").unwrap();
    p.send("\t").unwrap();
    p.send_line(&user).unwrap();
    p.exp_string("Password: ").unwrap();
    p.send_line("s3cret-pw").unwrap();
    p.exp_string(&format!("logged in as {user}")).unwrap();
    p.exp_string(&format!("seller {user}> ")).unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    let history = std::fs::read_to_string(home.join("marketplace/seller-cli-history")).unwrap();
    assert!(
        history.contains(&format!("create-account {user}")),
        "{history}"
    );
    assert!(
        !history.contains("s3cret-pw"),
        "passwords never reach the history"
    );
    let _ = std::fs::remove_dir_all(home);
}
