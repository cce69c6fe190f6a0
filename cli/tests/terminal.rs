//! The CLI at a real (pseudo-)terminal: the prompt shows who is logged in, the
//! password is asked for without echo, and command names complete with Tab.

mod support;

use rexpect::session::spawn_command;
use std::process::Command;
use support::*;

#[test]
fn login_with_a_no_echo_password_prompt_and_tab_completion() {
    let stack = stack();
    let home = deploy::testing::scratch_dir("cli-home");
    let user = unique("pty");
    let mut command = Command::new(env!("CARGO_BIN_EXE_seller-cli"));
    command
        .args(["--server", &stack.seller_addr().to_string()])
        .env("XDG_STATE_HOME", &*home)
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
    p.exp_string(&format!("logged in as {user} (seller "))
        .unwrap();
    let (_, seller_id) = p.exp_regex(r"[0-9]+").unwrap();
    p.exp_string(&format!("seller {user}> ")).unwrap();
    // Ctrl-C drops the half-typed line; the CLI stays, still logged in.
    p.send("frobnicate --half-typed").unwrap();
    p.send_control('c').unwrap();
    // The line editor drops input typed before its fresh prompt (and the
    // prompt text also appears in every redraw, so it cannot be waited for).
    std::thread::sleep(std::time::Duration::from_millis(500));
    p.send_line("rating").unwrap();
    let shown = p.exp_string(": 0 up, 0 down, 0 items sold").unwrap();
    assert!(
        !shown.contains("unknown command"),
        "the cancelled line ran: {shown:?}"
    );
    p.exp_string(&format!("seller {user}> ")).unwrap();
    // Ctrl-D logs out and exits.
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    let mut db = postgres::Client::connect(&stack.db().customer_url, postgres::NoTls).unwrap();
    let seller_id: i64 = seller_id.parse().unwrap();
    let open: i64 = db
        .query_one(
            "SELECT count(*) FROM seller_sessions WHERE seller_id = $1",
            &[&seller_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "Ctrl-D logged out");
    let history = std::fs::read_to_string(home.join("marketplace/seller-cli-history")).unwrap();
    assert!(
        history.contains(&format!("create-account {user}")),
        "{history}"
    );
    assert!(
        !history.contains("s3cret-pw"),
        "passwords never reach the history"
    );
}
