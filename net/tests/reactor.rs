//! The reactor against real sockets, with the echo service.

mod support;

use net::metrics::{Closed, ServerMetrics};
use net::Config;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use wire::ErrorCode;

#[test]
fn a_thousand_connections_each_pipelining_fifty_requests_get_every_reply_in_order() {
    let server = start(Config {
        workers: 4,
        ..Config::default()
    });
    let addr = server.addr;
    let threads: Vec<_> = (0..10)
        .map(|t| {
            std::thread::spawn(move || {
                let mut conns: Vec<_> = (0..100).map(|_| connect(addr)).collect();
                for (c, conn) in conns.iter_mut().enumerate() {
                    let mut burst = Vec::new();
                    for i in 0..50 {
                        burst.extend(frame(format!("t{t}c{c}r{i}").as_bytes()));
                    }
                    conn.write_all(&burst).unwrap();
                }
                for (c, conn) in conns.iter_mut().enumerate() {
                    for i in 0..50 {
                        let reply = read_frame(conn).unwrap();
                        assert_eq!(reply, format!("t{t}c{c}r{i}").as_bytes());
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_client_that_sends_half_a_frame_and_stalls_delays_nobody_and_is_closed_at_the_timeout() {
    let server = start(Config {
        idle_timeout: Duration::from_millis(400),
        workers: 1,
        ..Config::default()
    });
    let mut staller = connect(server.addr);
    let whole = frame(b"never finished");
    staller.write_all(&whole[..7]).unwrap();
    let started = Instant::now();
    let mut other = connect(server.addr);
    for i in 0..20 {
        write_frame(&mut other, format!("quick {i}").as_bytes());
        assert_eq!(
            read_frame(&mut other).unwrap(),
            format!("quick {i}").as_bytes()
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "others were delayed"
    );
    expect_closed(&mut staller);
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(350) && closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}"
    );
}

#[test]
fn an_idle_connection_is_closed_and_an_active_one_is_kept() {
    let server = start(Config {
        idle_timeout: Duration::from_millis(300),
        ..Config::default()
    });
    let mut idle = connect(server.addr);
    let mut active = connect(server.addr);
    let until = Instant::now() + Duration::from_millis(900);
    while Instant::now() < until {
        write_frame(&mut active, b"still here");
        assert_eq!(read_frame(&mut active).unwrap(), b"still here");
        std::thread::sleep(Duration::from_millis(100));
    }
    expect_closed(&mut idle);
}

#[test]
fn a_panicking_handler_answers_internal_and_the_server_lives_on() {
    let server = start(Config::default());
    let mut conn = connect(server.addr);
    write_frame(&mut conn, b"panic");
    let reply = read_frame(&mut conn).unwrap();
    let text = String::from_utf8(reply.clone()).unwrap();
    assert_eq!(error_code(reply), ErrorCode::Internal);
    assert!(text.contains("fault ref"), "{text}");
    write_frame(&mut conn, b"after the panic");
    assert_eq!(read_frame(&mut conn).unwrap(), b"after the panic");
    let mut fresh = connect(server.addr);
    write_frame(&mut fresh, b"new connection");
    assert_eq!(read_frame(&mut fresh).unwrap(), b"new connection");
}

#[test]
fn a_zero_length_frame_gets_bad_frame_and_the_connection_is_closed() {
    let server = start(Config::default());
    let mut conn = connect(server.addr);
    conn.write_all(&[0, 0, 0, 0]).unwrap();
    assert_eq!(
        error_code(read_frame(&mut conn).unwrap()),
        ErrorCode::BadFrame
    );
    expect_closed(&mut conn);
}

#[test]
fn each_closed_connection_is_counted_under_its_reason() {
    let metrics = Arc::new(ServerMetrics::new("echo", &[]));
    let server = start_counted(
        Config {
            idle_timeout: Duration::from_millis(400),
            ..Config::default()
        },
        metrics.clone(),
    );
    // Hangs up once answered: a normal end, not an error.
    let mut finished = connect(server.addr);
    write_frame(&mut finished, b"bye");
    assert_eq!(read_frame(&mut finished).unwrap(), b"bye");
    finished.shutdown(std::net::Shutdown::Write).unwrap();
    expect_closed(&mut finished);
    let mut bad = connect(server.addr);
    bad.write_all(&[0, 0, 0, 0]).unwrap();
    assert_eq!(
        error_code(read_frame(&mut bad).unwrap()),
        ErrorCode::BadFrame
    );
    expect_closed(&mut bad);
    let mut idle = connect(server.addr);
    expect_closed(&mut idle);
    let counted = |why| metrics.closed(why);
    let until = Instant::now() + Duration::from_secs(5);
    while (
        counted(Closed::Finished),
        counted(Closed::BadFrame),
        counted(Closed::Idle),
    ) != (1, 1, 1)
    {
        assert!(
            Instant::now() < until,
            "finished {}, bad_frame {}, idle {}",
            counted(Closed::Finished),
            counted(Closed::BadFrame),
            counted(Closed::Idle)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut open = connect(server.addr);
    write_frame(&mut open, b"still here");
    assert_eq!(read_frame(&mut open).unwrap(), b"still here");
    server.stop().unwrap();
    assert_eq!(counted(Closed::Draining), 1, "the open one, at stop");
    assert_eq!(counted(Closed::Io), 0);
    assert_eq!(metrics.connections(), 0);
}

#[test]
fn a_frame_over_the_limit_gets_bad_frame_before_its_body_arrives() {
    let server = start(Config {
        frame_limit: 1024,
        ..Config::default()
    });
    let mut conn = connect(server.addr);
    conn.write_all(&1025u32.to_be_bytes()).unwrap();
    assert_eq!(
        error_code(read_frame(&mut conn).unwrap()),
        ErrorCode::BadFrame
    );
    expect_closed(&mut conn);
    let mut huge = connect(server.addr);
    huge.write_all(&(1u32 << 31).to_be_bytes()).unwrap();
    assert_eq!(
        error_code(read_frame(&mut huge).unwrap()),
        ErrorCode::BadFrame
    );
    let mut ok = connect(server.addr);
    let body = vec![b'x'; 1024];
    write_frame(&mut ok, &body);
    assert_eq!(
        read_frame(&mut ok).unwrap(),
        body,
        "a frame at the limit is served"
    );
}

#[test]
fn at_the_limit_busy_connections_are_kept_the_newcomer_is_refused_and_room_is_made_on_close() {
    let server = start(Config {
        max_connections: 3,
        workers: 3,
        ..Config::default()
    });
    // Three connections each with a request in flight: none can give way.
    let mut held: Vec<_> = (0..3).map(|_| connect(server.addr)).collect();
    for conn in &mut held {
        write_frame(conn, b"sleep:1500 busy");
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = connect(server.addr);
    assert_eq!(
        error_code(read_frame(&mut extra).unwrap()),
        ErrorCode::Overloaded
    );
    expect_closed(&mut extra);
    for conn in &mut held {
        assert_eq!(
            read_frame(conn).unwrap(),
            b"sleep:1500 busy",
            "kept and answered"
        );
    }
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect(server.addr);
        write_frame(&mut again, b"room now");
        match read_frame(&mut again) {
            Ok(reply) if reply == b"room now" => break,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            other => panic!("never admitted: {other:?}"),
        }
    }
}

#[test]
fn a_full_job_queue_holds_requests_back_without_losing_any() {
    let server = start(Config {
        workers: 1,
        queue_depth: 1,
        ..Config::default()
    });
    let addr = server.addr;
    let clients: Vec<_> = (0..40)
        .map(|c| {
            std::thread::spawn(move || {
                let mut conn = connect(addr);
                for i in 0..5 {
                    write_frame(&mut conn, format!("sleep:1 c{c} i{i}").as_bytes());
                }
                for i in 0..5 {
                    assert_eq!(
                        read_frame(&mut conn).unwrap(),
                        format!("sleep:1 c{c} i{i}").as_bytes()
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}

#[test]
fn a_reply_for_a_reset_connection_never_reaches_the_next_one_in_its_slot() {
    let server = start(Config {
        workers: 2,
        ..Config::default()
    });
    let old = connect(server.addr);
    set_linger_zero(&old);
    let mut old = old;
    write_frame(&mut old, b"sleep:300 old");
    std::thread::sleep(Duration::from_millis(50));
    drop(old);
    std::thread::sleep(Duration::from_millis(50));
    let mut new = connect(server.addr);
    write_frame(&mut new, b"sleep:600 new");
    assert_eq!(read_frame(&mut new).unwrap(), b"sleep:600 new");
    write_frame(&mut new, b"second");
    assert_eq!(read_frame(&mut new).unwrap(), b"second");
}

#[test]
fn a_client_that_closes_after_sending_still_gets_its_replies_written_before_close() {
    let server = start(Config::default());
    let mut conn = connect(server.addr);
    let mut burst = frame(b"sleep:100 one");
    burst.extend(frame(b"two"));
    conn.write_all(&burst).unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_frame(&mut conn).unwrap(), b"sleep:100 one");
    assert_eq!(read_frame(&mut conn).unwrap(), b"two");
    expect_closed(&mut conn);
}

#[test]
fn a_slow_reader_that_never_reads_does_not_grow_server_memory() {
    let server = Process::spawn(&["--workers", "2"]);
    let baseline = server.rss_kib();
    let mut conn = connect(server.addr);
    conn.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let body = vec![b'z'; 256 * 1024];
    let request = frame(&body);
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Keep sending replies' worth of requests and never read: TCP must push back.
    while Instant::now() < deadline {
        match conn.write(&request) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
        if sent > 512 * 1024 * 1024 {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let grown = server.rss_kib().saturating_sub(baseline);
    assert!(
        sent < 256 * 1024 * 1024,
        "the server kept accepting: {sent} bytes"
    );
    assert!(
        grown < 16 * 1024,
        "server RSS grew by {grown} KiB after {sent} bytes sent"
    );
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let mut server = Process::spawn(&["--workers", "2"]);
    let mut busy = connect(server.addr);
    write_frame(&mut busy, b"sleep:700 in flight");
    std::thread::sleep(Duration::from_millis(150));
    server.signal(libc::SIGTERM);
    assert_eq!(read_frame(&mut busy).unwrap(), b"sleep:700 in flight");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        std::net::TcpStream::connect(server.addr).is_err(),
        "still accepting"
    );
}

#[test]
fn stopping_an_in_process_server_returns_ok_and_frees_the_port() {
    let server = start(Config::default());
    let addr = server.addr;
    let mut conn = connect(addr);
    write_frame(&mut conn, b"x");
    assert_eq!(read_frame(&mut conn).unwrap(), b"x");
    server.stop().unwrap();
    expect_closed(&mut conn);
}

#[test]
fn a_storm_on_the_slow_lane_never_holds_the_workers_that_serve_the_rest() {
    let server = start(Config {
        workers: 1,
        slow_workers: 1,
        slow_queue_depth: 2,
        ..Config::default()
    });
    // Six slow requests of 400 ms: one runs, two queue, three wait in their
    // connections for room in the slow lane.
    let mut slow: Vec<_> = (0..6).map(|_| connect(server.addr)).collect();
    for (i, conn) in slow.iter_mut().enumerate() {
        write_frame(conn, format!("slow:400 #{i}").as_bytes());
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut quick = connect(server.addr);
    for i in 0..5 {
        let started = Instant::now();
        write_frame(&mut quick, format!("quick #{i}").as_bytes());
        assert_eq!(
            read_frame(&mut quick).unwrap(),
            format!("quick #{i}").as_bytes()
        );
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(200),
            "waited behind the slow lane: {took:?}"
        );
    }
    // Every slow request is answered, in turn.
    for (i, conn) in slow.iter_mut().enumerate() {
        assert_eq!(
            read_frame(conn).unwrap(),
            format!("slow:400 #{i}").as_bytes()
        );
    }
}
