//! Both CLIs driven by piped scripts against a real stack: every command, the
//! printed tables, exit statuses, bad input, -c and --json.

mod support;

use support::*;

#[test]
fn every_seller_command_works_from_a_script() {
    let user = unique("sel");
    let category = unique_category();
    let run = seller(&format!(
        "# comments and blank lines are skipped\n\n\
         ping\n\
         create-account {user} pw\n\
         login {user} pw\n\
         register \"Blue mug\" --category {category} --keywords Mug,blue --condition new --price 9.99 --qty 10\n\
         register Spoon --category {category} --price 0.5\n\
         items\n\
         price 0 1\n"
    ));
    // `price 0 1` fails (no item 0), so the script's status is 1 and the rest ran.
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stdout.contains("seller server, protocol 1"),
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .contains(&format!("logged in as {user} (seller ")));
    let mug = id_after(&run.stdout, "item ");
    assert!(run
        .stdout
        .contains(&format!("registered in category {category}")));
    let table: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("Blue mug") || l.contains("Spoon"))
        .collect();
    assert_eq!(table.len(), 2, "{}", run.stdout);
    assert!(
        table[0].contains("9.99") && table[0].contains("New") && table[0].contains("mug,blue"),
        "{}",
        table[0]
    );
    assert!(
        table[1].contains("0.50"),
        "money has two decimals: {}",
        table[1]
    );
    assert!(
        run.stdout.contains("ID  NAME"),
        "a header row: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("error: you have no item 0 (NOT_FOUND)"),
        "{}",
        run.stderr
    );

    let run = seller(&format!(
        "login {user} pw\nprice {mug} 12.5\nremove-units {mug} 4\nadd-units {mug} 1\nrating\nhelp\nhelp register\nlogout\n"
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains(&format!("item {mug} now costs 12.50")));
    assert!(run.stdout.contains(&format!("item {mug} has 6 units")));
    assert!(run.stdout.contains(&format!("item {mug} has 7 units")));
    assert!(run.stdout.contains(": 0 up, 0 down, 0 items sold"));
    assert!(
        run.stdout.contains("remove-units ITEM COUNT"),
        "help lists commands"
    );
    assert!(
        run.stdout.contains("example: register \"Blue mug\""),
        "help CMD shows an example"
    );
    assert!(run.stdout.contains("logged out"));
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn every_buyer_command_works_from_a_script() {
    let seller_user = unique("own");
    let category = unique_category();
    let listed = seller(&format!(
        "create-account {seller_user} pw\nlogin {seller_user} pw\n\
         register Lamp --category {category} --keywords lamp,red --price 20 --qty 3\n"
    ));
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    let lamp = id_after(&listed.stdout, "item ");
    let seller_id = id_after(&listed.stdout, "(seller ");
    let user = unique("buy");
    let run = buyer(&format!(
        "ping\ncreate-account {user} pw\nlogin {user} pw\n\
         search {category} RED\nsearch {category} --limit 1 --offset 0\nitem {lamp}\n\
         add {lamp} 2\nremove {lamp} 1\ncart\nsave\nvote {lamp} up\nrating {seller_id}\nhistory\n\
         clear\ncart\nlogout\n"
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = &run.stdout;
    assert!(out.contains("buyer server, protocol 1"));
    assert!(out.contains("1 of 1 match, from offset 0"), "{out}");
    assert!(out
        .lines()
        .any(|l| l.contains("Lamp") && l.contains("20.00") && l.contains("lamp,red")));
    let cart_lines: Vec<&str> = out.lines().filter(|l| l.starts_with("total ")).collect();
    assert_eq!(
        cart_lines,
        vec!["total 40.00", "total 20.00", "total 20.00"],
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("Lamp") && l.trim_end().ends_with("20.00")),
        "{out}"
    );
    assert!(out.contains("cart saved"));
    assert!(out.contains(&format!("item {lamp}: 1 up, 0 down")));
    assert!(out.contains(&format!("seller {seller_id}: 1 up, 0 down, 0 items sold")));
    assert!(out.contains("(no purchases yet)"));
    assert!(out.contains("cart cleared"));
    assert!(out.contains("(the cart is empty)"));
    assert!(out.contains("logged out"));
}

#[test]
fn buy_sends_the_card_prints_the_receipt_and_the_history_shows_it() {
    let (_, _, kettle) = list_item("Kettle", "12.5", 5);
    let user = unique("card");
    let run = buyer(&format!(
        "create-account {user} pw\nlogin {user} pw\n\
         buy --name Bob --number 4111111111111111 --expiry 12/2030 --cvc 123\n\
         add {kettle} 2\n\
         buy --name Bob --number 4111-1111-1111-1112 --expiry 12/2030 --cvc 123\n\
         buy --name Bob --number 4111111111111111 --expiry soon --cvc 123\n\
         buy --name \"Bob Smith\" --number \"4111 1111 1111 1111\" --expiry 12/2030 --cvc 123\n\
         history\ncart\n"
    ));
    assert_eq!(run.code, Some(1), "three of the buys fail");
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert!(errors[0].contains("(CART_EMPTY)"), "{errors:?}");
    // A mistyped digit is the CLI's to report, before the server is asked
    // (PAYMENT_DECLINED is for what the processor refuses).
    assert!(
        errors[1].contains("the card number fails its check digit"),
        "{errors:?}"
    );
    assert!(
        errors[2].contains("expiry must look like 12/2030"),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 3, "{errors:?}");
    let out = &run.stdout;
    assert!(out.contains(" done\n"), "a receipt: {out}");
    assert!(out.lines().any(|l| l.trim() == "total 25.00"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(&kettle.to_string()) && l.contains("12.50") && l.contains("Z")),
        "the history lists the line with its time: {out}"
    );
    assert!(out.trim_end().ends_with("(the cart is empty)"), "{out}");
}

#[test]
fn bad_input_gets_a_usage_line_not_a_crash() {
    let user = unique("bad");
    let run = buyer(&format!(
        "frobnicate\ncreate-account {user} pw\nlogin {user} pw\n\
         search notanumber\nsearch 1 a b c d e f\nadd twelve\nvote 1 sideways\n\
         item\nsearch 1 --limit\nsearch 1 --sort price\nsay \"unterminated\ncart\n"
    ));
    assert_eq!(
        run.code,
        Some(1),
        "a failed command makes the status non-zero"
    );
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert!(
        errors[0].contains("unknown command \"frobnicate\"; try help"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("CATEGORY must be a number")
            && errors[1].contains("usage: search CATEGORY")
    );
    // Checked before sending, so it comes with the usage line.
    assert!(errors[2].contains("at most 5 keywords, got 6") && errors[2].contains("usage: search"));
    assert!(errors[3].contains("ITEM must be a number") && errors[3].contains("usage: add ITEM"));
    assert!(errors[4].contains("up or down") && errors[4].contains("usage: vote"));
    assert!(errors[5].contains("missing ITEM") && errors[5].contains("usage: item ITEM"));
    assert!(errors[6].contains("--limit needs a value"));
    assert!(errors[7].contains("unknown option --sort"));
    assert!(errors[8].contains("unterminated quote"));
    assert_eq!(errors.len(), 9, "{errors:?}");
    assert!(
        run.stdout.contains("(the cart is empty)"),
        "later commands still run"
    );
    let run = buyer("cart\n");
    assert!(run.stderr.contains("not logged in"), "{}", run.stderr);
    assert!(!run.stderr.contains('\u{1b}'), "no colours in scripts");
}

#[test]
fn dash_c_runs_commands_and_json_prints_one_line_per_response() {
    let user = unique("json");
    let server = stack().buyer_addr();
    let run = piped(
        env!("CARGO_BIN_EXE_buyer-cli"),
        server,
        &[
            "--json",
            "-c",
            &format!("create-account {user} pw; login {user} pw; cart"),
        ],
        "",
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "create, login and cart; the logout at exit prints nothing: {lines:?}"
    );
    for line in &lines {
        let mut bytes = line.as_bytes().to_vec();
        let value = simd_json::to_owned_value(&mut bytes).expect("each line is JSON");
        assert_eq!(value["status"], "OK", "{line}");
    }
    assert!(lines[2].contains("\"cart_items\":{}"), "{}", lines[2]);
    assert!(
        !run.stdout.contains("session_id"),
        "--json never prints a session id: {}",
        run.stdout
    );
}

#[test]
fn a_script_gives_a_password_left_off_the_line_on_the_next_line_and_never_echoes_it() {
    let user = unique("secret");
    let secret = format!("hunter{}", unique("").len());
    // The account, with the password on its line.
    let made = buyer(&format!("create-account {user} {secret}\n"));
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    // login USER, then the password on the next line, as typed at a prompt.
    let run = buyer(&format!("login {user}\n{secret}\ncart\n"));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!("logged in as {user}")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("(the cart is empty)"), "{}", run.stdout);
    for out in [&run.stdout, &run.stderr] {
        assert!(
            !out.contains(&secret),
            "the password is never printed: {out}"
        );
        assert!(!out.contains("unknown command"), "{out}");
    }
    // A script that ends where the password should be: an error, no echo.
    let run = buyer(&format!("login {user}\n"));
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("no password given"), "{}", run.stderr);
    // In -c there is no next line: say how to give it.
    let run = piped(
        env!("CARGO_BIN_EXE_buyer-cli"),
        stack().buyer_addr(),
        &["-c", &format!("login {user}; cart")],
        "",
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("missing password"), "{}", run.stderr);
}

#[test]
fn numbers_are_checked_before_anything_is_sent() {
    // Nothing listens there: every line must be refused by the CLI itself.
    let dead = dead_addr();
    let run = piped(
        env!("CARGO_BIN_EXE_seller-cli"),
        dead,
        &[
            "-c",
            "price 1 1e3; price 1 -3; price 1 9.999; register x --category -1 --price 1; \
             register x --category 1 --price 1e3; register x --category 1 --price 1 --qty -1",
        ],
        "",
    );
    assert_eq!(run.code, Some(1));
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 6, "{errors:?}");
    for (line, expected) in errors.iter().zip([
        "PRICE is an amount like 9.99",
        "PRICE is an amount like 9.99",
        "PRICE is an amount like 9.99",
        "--category must be 0 to 2147483647, got -1",
        "--price is an amount like 9.99",
        "--qty must be 0 to 1000000000, got -1",
    ]) {
        assert!(line.contains(expected), "{line}");
        assert!(line.contains("usage: "), "{line}");
    }
    let run = piped(
        env!("CARGO_BIN_EXE_buyer-cli"),
        dead,
        &["-c", "add 3 0; remove 3 -2; search -1"],
        "",
    );
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].contains("QTY must be 1 to 1000000000, got 0"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("QTY must be 1 to 1000000000, got -2"),
        "{errors:?}"
    );
    assert!(
        errors[2].contains("CATEGORY must be 0 to 2147483647, got -1"),
        "{errors:?}"
    );
    for line in errors {
        assert!(
            !line.contains("cannot reach"),
            "refused before sending: {line}"
        );
    }
}

#[test]
fn an_item_registered_without_units_is_said_to_be_sold_out() {
    let user = unique("nounits");
    let category = unique_category();
    let run = seller(&format!(
        "create-account {user} pw\nlogin {user} pw\n\
         register Ghost --category {category} --price 2 --qty 0\n"
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let id = id_after(&run.stdout, "item ");
    assert!(
        run.stdout.contains(&format!(
            "item {id} registered in category {category}, with no units: sold out until you add-units {id} COUNT"
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn json_scripts_get_a_line_for_every_command_and_dash_e_stops_at_the_first_failure() {
    let user = unique("jsonerr");
    let run = piped(
        env!("CARGO_BIN_EXE_buyer-cli"),
        stack().buyer_addr(),
        &[
            "--json",
            "-c",
            &format!("create-account {user} pw; frobnicate; add 1 0; login {user} wrong; ping"),
        ],
        "",
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let lines: Vec<simd_json::OwnedValue> = run
        .stdout
        .lines()
        .map(|l| simd_json::to_owned_value(&mut l.as_bytes().to_vec()).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 5, "one line per command: {}", run.stdout);
    let field = |i: usize, f: &str| {
        use simd_json::prelude::*;
        lines[i][f].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(field(0, "status"), "OK");
    assert_eq!(field(1, "status"), "Error");
    assert_eq!(field(1, "code"), "CLI_ERROR");
    assert!(field(1, "message").contains("frobnicate"), "{}", run.stdout);
    assert_eq!(field(2, "code"), "CLI_USAGE");
    assert_eq!(field(3, "status"), "Error", "the server's own refusal");
    assert_eq!(field(4, "status"), "OK");
    // -e: the script stops at the first failure.
    let run = piped(
        env!("CARGO_BIN_EXE_buyer-cli"),
        stack().buyer_addr(),
        &["-e", "-c", "ping; frobnicate; ping"],
        "",
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stdout.matches("buyer server, protocol").count(),
        1,
        "{}",
        run.stdout
    );
    let run = buyer("frobnicate\nping\n");
    assert!(
        run.stdout.contains("buyer server, protocol"),
        "without -e it goes on"
    );
}

#[test]
fn a_mistyped_command_gets_a_suggestion_and_quit_takes_no_arguments() {
    let run = piped(
        env!("CARGO_BIN_EXE_seller-cli"),
        dead_addr(),
        &["-c", "regster x; Items; frobnicate; quit now; help"],
        "",
    );
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(
        errors[0].contains("unknown command \"regster\"; did you mean register?"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("unknown command \"Items\"; did you mean items?"),
        "{errors:?}"
    );
    assert!(
        errors[2].contains("unknown command \"frobnicate\"; try help"),
        "{errors:?}"
    );
    assert!(
        errors[3].contains("quit takes no arguments, got now"),
        "{errors:?}"
    );
    assert!(
        run.stdout.contains("seller-cli commands"),
        "the script went on: {}",
        run.stdout
    );
}

#[test]
fn card_typing_mistakes_are_the_clis_to_report_in_the_fields_words() {
    let good = "--name Bob --number 4111111111111111 --expiry 12/30 --cvc 123";
    let cases = [
        (
            "--name \"\" --number 4111111111111111 --expiry 12/30 --cvc 123",
            "the cardholder name must be 1 to 64 characters, got none",
        ),
        (
            "--name Bob --number 4111111111111112 --expiry 12/30 --cvc 123",
            "the card number fails its check digit",
        ),
        (
            "--name Bob --number 4111-1111 --expiry 12/30 --cvc 123",
            "the card number must be 12 to 19 digits",
        ),
        (
            "--name Bob --number 4111111111111111 --expiry 13/30 --cvc 123",
            "expiry",
        ),
        (
            "--name Bob --number 4111111111111111 --expiry 12/30 --cvc 12a",
            "the security code must be 3 or 4 digits",
        ),
    ];
    let script: Vec<String> = cases
        .iter()
        .map(|(args, _)| format!("buy {args} --yes"))
        .collect();
    // Nothing listens there, and nobody is logged in: the CLI must find each
    // mistake itself, before it asks anything of a server.
    let run = piped(
        env!("CARGO_BIN_EXE_buyer-cli"),
        dead_addr(),
        &["-c", &script.join("; ")],
        "",
    );
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), cases.len(), "{errors:?}");
    for (line, (_, expected)) in errors.iter().zip(cases) {
        assert!(line.contains(expected), "{line}");
        assert!(
            !line.to_lowercase().contains("declined"),
            "a typing mistake: {line}"
        );
        assert!(
            !line.contains("not logged in") && !line.contains("cannot reach"),
            "{line}"
        );
        assert!(
            !line.contains("4111") && !line.contains("12a"),
            "never echoed: {line}"
        );
    }
    // The good card gets past the CLI (to the login it needs).
    let run = piped(
        env!("CARGO_BIN_EXE_buyer-cli"),
        dead_addr(),
        &["-c", &format!("buy {good} --yes")],
        "",
    );
    assert!(run.stderr.contains("not logged in"), "{}", run.stderr);
}

#[test]
fn an_accent_typed_either_way_is_the_same_keyword_and_name() {
    let user = unique("nfc");
    let category = unique_category();
    // The seller types the accents as combining marks (\u escapes); the
    // buyer types precomposed ones.
    let run = seller(&format!(
        "create-account {user} pw\nlogin {user} pw\n\
         register \"e\\u0301clair\" --category {category} --price 3 --keywords \"cre\\u{{300}}me\"\n"
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let buyer_user = unique("nfcb");
    let run = buyer(&format!(
        "create-account {buyer_user} pw\nlogin {buyer_user} pw\nsearch {category} crème\n"
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("1 of 1 match"), "found: {}", run.stdout);
    assert!(
        run.stdout.contains("éclair"),
        "the name, composed: {}",
        run.stdout
    );
    assert!(!run.stdout.contains("e\u{301}clair"), "{}", run.stdout);
}

#[test]
fn the_cart_marks_a_price_changed_since_it_was_seen_and_totals_what_can_be_bought() {
    use std::io::{BufRead, BufReader, Write};
    let (owner, category, mug) = list_item("Mug", "7", 5);
    let (owner2, _, vase) = list_item("Vase", "4", 1);
    let user = unique("marks");
    let mut child = spawn_cli(env!("CARGO_BIN_EXE_buyer-cli"), stack().buyer_addr());
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut wait_for = |marker: &str| {
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "ended before {marker}: {seen}"
            );
            seen.push_str(&line);
            if line.contains(marker) {
                return seen;
            }
        }
    };
    writeln!(
        stdin,
        "create-account {user} pw\nlogin {user} pw\nsearch {category} tea\nadd {mug} 2\nadd {vase} 1"
    )
    .unwrap();
    wait_for("from offset");
    wait_for("total");
    wait_for("total 18.00");
    // The seller raises the price; the vase sells out.
    let run = seller(&format!("login {owner} pw\nprice {mug} 9\n"));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = seller(&format!("login {owner2} pw\nremove-units {vase} 1\n"));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    writeln!(stdin, "cart").unwrap();
    let shown = wait_for("total ");
    let mug_line = shown
        .lines()
        .find(|l| l.contains("Mug"))
        .expect("the mug's line");
    assert!(mug_line.contains("9.00 (was 7.00)"), "{shown}");
    assert!(shown.contains("Vase (sold out)"), "{shown}");
    assert!(
        shown.contains("total 18.00 (what can be bought now)"),
        "only the mugs count: {shown}"
    );
    // Seen once, the new price is the price.
    writeln!(stdin, "cart").unwrap();
    let again = wait_for("total ");
    assert!(!again.contains("(was"), "{again}");
    drop(stdin);
    child.wait().unwrap();
}
