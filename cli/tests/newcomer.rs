//! What a newcomer's afternoon with the CLIs found (issue "The CLIs as people
//! expect them"), driven from scripts: counts that must be positive and errors
//! in the command's words, limits stated, help with no server, `?` and `\q`,
//! `--version`, names and totals on receipts and history, a two-digit expiry,
//! carts that mark what cannot be bought, and what login and logout say about
//! carts. The terminal-only points are in terminal.rs.

mod support;

use support::*;

fn seller_with_item(qty: i64) -> (String, i64, i64) {
    list_item("Café ☕ 日本茶", "2.5", qty)
}

#[test]
fn seller_counts_are_positive_and_errors_speak_the_commands_words() {
    let (owner, category, id) = seller_with_item(10);
    let run = seller(&format!(
        "login {owner} pw\n\
         add-units {id} -3\n\
         remove-units {id} -3\n\
         remove-units {id} 0\n\
         add-units {id} 1000000001\n\
         price {id} 1.005\n\
         register Pen --category {category} --price 1 --keywords book,rust,programming\n\
         register Pen --category {category} --price 1 --keywords a,b,c,d,e,f\n\
         register \"{long}\" --category {category} --price 1\n\
         items\n",
        long = "x".repeat(33)
    ));
    assert_eq!(run.code, Some(1));
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 8, "{errors:?}");
    for e in &errors[..4] {
        assert!(e.contains("COUNT must be 1 to 1000000000"), "{e}");
        assert!(!e.contains("quantity_change"), "no wire field names: {e}");
    }
    assert!(errors[0].contains("got -3") && errors[3].contains("got 1000000001"));
    assert!(
        errors[4]
            .contains("PRICE is an amount like 9.99 (0 to 1000000000, to the cent), got \"1.005\""),
        "{}",
        errors[4]
    );
    assert!(
        errors[5].contains("keyword \"programming\" has 11 characters"),
        "names the keyword: {}",
        errors[5]
    );
    assert!(errors[6].contains("at most 5 keywords"), "{}", errors[6]);
    assert!(errors[7].contains("NAME must be 1 to 32 characters, got 33"));
    // Nothing changed: still 10 units, one item.
    let row = run
        .stdout
        .lines()
        .find(|l| l.contains("Café"))
        .expect("the item row");
    assert!(row.contains(" 10 "), "{row}");
}

#[test]
fn help_states_the_limits_and_works_without_a_server_which_is_named_when_needed() {
    // A port nothing listens on.
    let dead = dead_addr();
    let run = piped(
        env!("CARGO_BIN_EXE_seller-cli"),
        dead,
        &["-c", "help; help register; ?"],
        "",
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    // Wrapped to 80 columns (not a terminal), so read as words.
    assert!(
        run.stdout.lines().all(|l| l.chars().count() <= 80),
        "wrapped: {}",
        run.stdout
    );
    let words = run.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("register NAME --category N"), "{words}");
    assert!(
        words.contains("1-32 characters") && words.contains("1-8 characters"),
        "{words}"
    );
    assert!(words.contains("--qty defaults to 1"), "{words}");
    assert!(
        words.contains("--condition New|Used"),
        "as the server says: {words}"
    );
    let run = piped(
        env!("CARGO_BIN_EXE_buyer-cli"),
        dead,
        &["-c", "help search; help remove"],
        "",
    );
    let words = run.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("(default 50)"), "{words}");
    assert!(words.contains("QTY defaults to 1"), "{words}");
    let run = piped(env!("CARGO_BIN_EXE_seller-cli"), dead, &["-c", "ping"], "");
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains(&format!("cannot reach the seller server at {dead}"))
            && run.stderr.contains("deploy/up.sh"),
        "{}",
        run.stderr
    );
    let version = std::process::Command::new(env!("CARGO_BIN_EXE_buyer-cli"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("buyer-cli "));
}

#[test]
fn backslash_q_quits_a_script_and_the_rest_does_not_run() {
    let run = seller("ping\n\\q\nfrobnicate\n");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stdout.contains("seller server"));
    assert!(
        run.stderr.is_empty(),
        "nothing ran after \\q: {}",
        run.stderr
    );
}

#[test]
fn buying_names_the_items_totals_each_purchase_and_reads_a_two_digit_year() {
    let (_, category, id) = seller_with_item(5);
    let user = unique("nb");
    let run = buyer(&format!(
        "create-account {user} pw\nlogin {user} pw\n\
         search {category} zzz\n\
         search {category} nothing-like-it\n\
         add {id} 2\n\
         buy --name Bob --number 4111111111111111 --expiry 13/30 --cvc 123\n\
         buy --name Bob --number 4111111111111111 --expiry 12/3 --cvc 123\n\
         buy --name Bob --number 4111111111111111 --expiry 12/30 --cvc 123\n\
         history\n"
    ));
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let errors: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].contains("keyword \"nothing-like-it\" has 15 characters"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("the expiry month is 1 to 12, got 13"),
        "{errors:?}"
    );
    assert!(
        errors[2].contains("expiry must look like 12/2030 (or 12/30)"),
        "{errors:?}"
    );
    assert!(
        !run.stderr.contains("PAYMENT_DECLINED"),
        "an input error, not a decline"
    );
    let out = &run.stdout;
    assert!(out.contains("no items match"), "{out}");
    assert!(
        !out.contains("(no items)") && !out.contains("0 of 0"),
        "one line: {out}"
    );
    let receipt: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains(" done"))
        .take(4)
        .collect();
    assert!(receipt[1].contains("NAME"), "{receipt:?}");
    assert!(
        receipt[2].contains("Café ☕ 日本茶"),
        "names on the receipt: {receipt:?}"
    );
    assert_eq!(receipt[3], "total 5.00", "{receipt:?}");
    let history: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("PURCHASE"))
        .collect();
    assert!(
        history[0].contains("NAME") && history[0].contains("TOTAL"),
        "{history:?}"
    );
    assert!(history[1].contains("Café ☕ 日本茶") && history[1].contains("2.50"));
    assert_eq!(
        history[2].trim(),
        "5.00",
        "the purchase's total: {history:?}"
    );
}

#[test]
fn carts_mark_what_cannot_be_bought_and_login_and_logout_say_what_happens_to_them() {
    let (owner, _, id) = seller_with_item(3);
    let user = unique("nc");
    let run = buyer(&format!(
        "create-account {user} pw\nlogin {user} pw\nadd {id} 2\nsave\nadd {id} 1\nlogout\n"
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("your cart changes since the last save are discarded"),
        "{}",
        run.stdout
    );
    // The seller sells all but one unit elsewhere: the saved cart of 2 cannot
    // be bought whole now.
    let sold = seller(&format!("login {owner} pw\nremove-units {id} 2\n"));
    assert_eq!(sold.code, Some(0), "{}", sold.stderr);
    let run = buyer(&format!("login {user} pw\ncart\n"));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("your saved cart is back: 1 item, 2 units"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("(only 1 left)"), "{}", run.stdout);
    let sold = seller(&format!("login {owner} pw\nremove-units {id} 1\n"));
    assert_eq!(sold.code, Some(0), "{}", sold.stderr);
    let run = buyer(&format!("login {user} pw\ncart\n"));
    assert!(run.stdout.contains("(sold out)"), "{}", run.stdout);
}

#[test]
fn json_carts_carry_names_and_prices_and_a_sellers_items_do_not_repeat_their_id() {
    let (owner, _, id) = seller_with_item(3);
    let run = seller(&format!("login {owner} pw\nitems\n"));
    let header = run.stdout.lines().find(|l| l.contains("NAME")).unwrap();
    assert!(!header.contains("SELLER"), "{header}");
    let user = unique("nj");
    let created = buyer(&format!("create-account {user} pw\n"));
    assert_eq!(created.code, Some(0), "{}", created.stderr);
    let run = piped(
        env!("CARGO_BIN_EXE_buyer-cli"),
        stack().buyer_addr(),
        &[
            "--json",
            "-c",
            &format!("login {user} pw; add {id} 2; add {id} 9; cart"),
        ],
        "",
    );
    assert_eq!(run.code, Some(1), "the second add fails: {}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "login, add, the refusal, cart: {lines:?}");
    assert!(
        lines[2].contains("INSUFFICIENT_STOCK"),
        "refusals print as JSON: {}",
        lines[2]
    );
    for line in [lines[1], lines[3]] {
        let mut bytes = line.as_bytes().to_vec();
        let value = simd_json::to_owned_value(&mut bytes).expect("JSON");
        assert_eq!(value["status"], "OK", "{line}");
        assert_eq!(value["lines"][0]["item_name"], "Café ☕ 日本茶", "{line}");
        assert_eq!(value["lines"][0]["unit_price"], 2.5, "{line}");
        assert_eq!(value["lines"][0]["quantity"], 2, "{line}");
        assert_eq!(value["total"], 5.0, "{line}");
    }
}

#[test]
fn a_sellers_items_include_the_sold_out_ones_marked_for_restocking() {
    let (owner, _, id) = seller_with_item(2);
    let run = seller(&format!(
        "login {owner} pw\nremove-units {id} 2\nitems\nadd-units {id} 5\nitems\n"
    ));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let rows: Vec<&str> = run.stdout.lines().filter(|l| l.contains("Café")).collect();
    assert_eq!(rows.len(), 2, "{}", run.stdout);
    assert!(rows[0].contains("sold out"), "{}", rows[0]);
    assert!(
        run.stdout.contains("add-units ITEM_ID COUNT"),
        "says how to restock: {}",
        run.stdout
    );
    assert!(
        !rows[1].contains("sold out") && rows[1].contains(" 5 "),
        "{}",
        rows[1]
    );
}
