//! The CLI at a real (pseudo-)terminal: the prompt shows who is logged in, the
//! password is asked for without echo, and command names complete with Tab.

mod support;

use support::*;

#[test]
fn login_with_a_no_echo_password_prompt_and_tab_completion() {
    let stack = stack();
    let user = unique("pty");
    let (mut p, home) = spawn_pty(
        env!("CARGO_BIN_EXE_seller-cli"),
        stack.seller_addr(),
        "cli-home",
    );
    p.exp_string("seller> ").unwrap();
    // A new password is asked twice; two that differ create nothing.
    p.send_line(&format!("create-account {user}")).unwrap();
    p.exp_string("Password: ").unwrap();
    p.send_line("s3cret-pw").unwrap();
    p.exp_string("Password again: ").unwrap();
    p.send_line("s3cret-px").unwrap();
    p.exp_string("the two passwords differ; nothing was created")
        .unwrap();
    p.exp_string("seller> ").unwrap();
    p.send_line(&format!("create-account {user}")).unwrap();
    p.exp_string("Password: ").unwrap();
    p.send_line("s3cret-pw").unwrap();
    p.exp_string("Password again: ").unwrap();
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
    // A password typed on the line never reaches the history, which is
    // written as the session goes; logging in again says who was logged out.
    p.send_line(&format!("login {user} s3cret-pw")).unwrap();
    p.exp_string(&format!("logged in again as {user} (seller "))
        .unwrap();
    p.exp_string("; the earlier session is ended").unwrap();
    p.exp_string(&format!("seller {user}> ")).unwrap();
    let history_file = home.join("marketplace/seller-cli-history");
    let so_far = std::fs::read_to_string(&history_file).unwrap();
    assert!(so_far.contains(&format!("login {user}\n")), "{so_far}");
    assert!(!so_far.contains("s3cret-pw"), "{so_far}");
    // Tab completes a command name after `help `, too.
    std::thread::sleep(std::time::Duration::from_millis(300));
    p.send("help regi").unwrap();
    p.send("\t").unwrap();
    p.send_line("").unwrap();
    p.exp_string("usage: register NAME").unwrap();
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
    assert_eq!(
        open, 0,
        "Ctrl-D logged out, and the re-login ended the first session"
    );
    let history = std::fs::read_to_string(&history_file).unwrap();
    assert!(
        history.contains(&format!("create-account {user}")),
        "{history}"
    );
    assert!(
        !history.contains("s3cret-pw"),
        "passwords never reach the history"
    );
}

#[test]
fn buy_at_a_terminal_shows_the_total_and_charges_only_when_confirmed() {
    let (_, _, kettle) = list_item("Kettle", "12.5", 5);
    let (vase_owner, _, vase) = list_item("Vase", "4", 1);
    let user = unique("ptyb");
    let (mut p, home) = spawn_pty(
        env!("CARGO_BIN_EXE_buyer-cli"),
        stack().buyer_addr(),
        "cli-buy-home",
    );
    p.exp_string("buyer> ").unwrap();
    p.send_line(&format!("create-account {user} pw")).unwrap();
    p.exp_string("created").unwrap();
    p.exp_string("buyer> ").unwrap();
    p.send_line(&format!("login {user} pw")).unwrap();
    p.exp_string(&format!("buyer {user}> ")).unwrap();
    p.send_line(&format!("add {kettle} 2")).unwrap();
    p.exp_string("total 25.00").unwrap();
    p.exp_string(&format!("buyer {user}> ")).unwrap();
    let buy = "buy --name Bob --number 4111111111111111 --expiry 12/30 --cvc 123";
    // A line that cannot be bought as it stands: named, and no charge asked.
    p.send_line(&format!("add {vase} 1")).unwrap();
    p.exp_string("total 29.00").unwrap();
    p.exp_string(&format!("buyer {user}> ")).unwrap();
    let run = seller(&format!("login {vase_owner} pw\nremove-units {vase} 1\n"));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    p.send_line(buy).unwrap();
    p.exp_string("Vase (sold out)").unwrap();
    let said = p
        .exp_string(&format!("item {vase} cannot be bought as the cart has it"))
        .unwrap();
    assert!(
        !said.contains("Charge"),
        "no charge was asked about: {said:?}"
    );
    p.exp_string(&format!("buyer {user}> ")).unwrap();
    p.send_line(&format!("remove {vase} 1")).unwrap();
    p.exp_string("total 25.00").unwrap();
    p.exp_string(&format!("buyer {user}> ")).unwrap();
    p.send_line(buy).unwrap();
    p.exp_string("Charge 25.00 to your card? [y/N] ").unwrap();
    p.send_line("n").unwrap();
    p.exp_string("not charged: nothing bought").unwrap();
    p.exp_string(&format!("buyer {user}> ")).unwrap();
    // Ctrl-D at the question is a no, said as such.
    p.send_line(buy).unwrap();
    p.exp_string("Charge 25.00 to your card? [y/N] ").unwrap();
    p.send_control('d').unwrap();
    let said = p.exp_string("not charged: nothing bought").unwrap();
    assert!(!said.contains("error"), "{said:?}");
    p.exp_string(&format!("buyer {user}> ")).unwrap();
    p.send_line(buy).unwrap();
    p.exp_string("Charge 25.00 to your card? [y/N] ").unwrap();
    p.send_line("y").unwrap();
    p.exp_string(" done").unwrap();
    p.exp_string("total 25.00").unwrap();
    p.exp_string(&format!("buyer {user}> ")).unwrap();
    p.send_line("quit").unwrap();
    p.exp_eof().unwrap();
    // The history keeps `buy`, never the card.
    let history = std::fs::read_to_string(home.join("marketplace/buyer-cli-history")).unwrap();
    assert!(history.contains("\nbuy\n"), "{history}");
    assert!(
        !history.contains("4111") && !history.contains("123\n"),
        "{history}"
    );
}

#[test]
fn ctrl_c_cancels_a_password_prompt_and_reconnecting_without_ending_the_cli() {
    // A server reached once and then gone: the next command keeps
    // reconnecting, on one line rewritten in place, until Ctrl-C.
    let relay = Relay::start(stack().buyer_addr());
    let (mut p, _home) = spawn_pty(env!("CARGO_BIN_EXE_buyer-cli"), relay.addr, "cli-ctrl-c");
    p.exp_string("buyer> ").unwrap();
    // A bracketed paste of two lines runs as two commands, in order.
    p.send("\u{1b}[200~help add\nhelp remove\u{1b}[201~")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    p.send_line("").unwrap();
    p.exp_string("usage: add ITEM").unwrap();
    p.exp_string("usage: remove ITEM").unwrap();
    p.exp_string("buyer> ").unwrap();
    // help needs no server.
    p.send_line("help login").unwrap();
    p.exp_string("usage: login USER [PASSWORD]").unwrap();
    p.exp_string("buyer> ").unwrap();
    // Ctrl-C at the no-echo prompt cancels it; the CLI stays.
    p.send_line("login someone").unwrap();
    p.exp_string("Password: ").unwrap();
    p.send("typed-half").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("cancelled").unwrap();
    p.exp_string("buyer> ").unwrap();
    // Ctrl-D there: the message starts on a line of its own.
    std::thread::sleep(std::time::Duration::from_millis(300));
    p.send_line("login someone").unwrap();
    p.exp_string("Password: ").unwrap();
    p.send_control('d').unwrap();
    let before = p.exp_string("no password given").unwrap();
    let after_prompt = &before[before.rfind("Password: ").expect("the prompt")..];
    assert!(
        after_prompt.contains("\r\n"),
        "on a line of its own: {before:?}"
    );
    p.exp_string("buyer> ").unwrap();
    // Reconnecting: one updating line, then Ctrl-C stops it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    p.send_line("ping").unwrap();
    p.exp_string("buyer> ").unwrap();
    relay.cut();
    p.send_line("ping").unwrap();
    p.exp_string("retrying 2/19").unwrap();
    let (before, _) = p.exp_string("retrying 3/19").map(|s| (s, ())).unwrap();
    assert!(
        before.contains("\r\u{1b}[K"),
        "rewritten in place: {before:?}"
    );
    p.send_control('c').unwrap();
    p.exp_string("error: cancelled").unwrap();
    p.exp_string("buyer> ").unwrap();
    p.send_line("quit").unwrap();
    p.exp_eof().unwrap();
}

/// Runs `bin` in a tmux session of its own (a real terminal, 100x30), types
/// `keys` (tmux key names), and returns the screen.
fn tmux_screen(bin: &str, keys: &[&str]) -> String {
    let socket = format!("cli-test-{}", std::process::id());
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("tmux (deploy/setup.sh installs it)")
    };
    let home = deploy::testing::scratch_dir("cli-tmux");
    let command = format!(
        "env XDG_STATE_HOME={} {bin} --server {}",
        home.display(),
        dead_addr()
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        &command,
    ]);
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    for key in keys {
        tmux(&["send-keys", "-t", "t", key]);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let screen =
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned();
    tmux(&["kill-server"]);
    screen
}

#[test]
fn tab_lists_the_choices_of_an_ambiguous_prefix_instead_of_cycling() {
    let screen = tmux_screen(env!("CARGO_BIN_EXE_buyer-cli"), &["c", "Tab", "Tab"]);
    let listing = screen
        .lines()
        .find(|l| l.contains("create-account"))
        .unwrap_or_else(|| panic!("no listing: {screen}"));
    assert!(
        listing.contains("cart") && listing.contains("clear"),
        "{screen}"
    );
    // The line itself is still what was typed: nothing was cycled in.
    assert!(
        screen
            .lines()
            .filter(|l| l.trim_end() == "buyer> c")
            .count()
            >= 1,
        "{screen}"
    );
}
