//! `rampart webhook add | list | test | remove` (docs/webhooks.md), against a receiver on
//! 127.0.0.1 that answers 200 and keeps what it got.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use rampart_sim::SimConfig;

use crate::Env;

/// A one-request-at-a-time HTTP receiver; returns its URL and the requests it got (head and body).
fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            kept.lock()
                .expect("lock")
                .push(format!("{head}\n{}", String::from_utf8_lossy(&body)));
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, seen)
}

#[test]
fn webhooks_are_added_from_stdin_tested_listed_and_removed() {
    let env = Env::new(SimConfig {
        devices: 5,
        findings_per_device: 2,
        ..SimConfig::default()
    });
    let (base, seen) = receiver();
    let url = format!("{base}/hook/PathToken0123456789");

    // The URL is never taken from the command line.
    let none = env.run(
        &["webhook", "add", "--name", "soc", "--events", "sync_failed"],
        None,
    );
    assert_eq!(none.code, 2, "{none:?}");
    assert!(none.stderr.contains("--url-stdin"), "{none:?}");

    let add = env.run(
        &[
            "webhook",
            "add",
            "--name",
            "soc",
            "--events",
            "sync_failed,immediate_finding",
            "--url-stdin",
        ],
        Some(&url),
    );
    assert_eq!(add.code, 0, "{add:?}");
    assert!(add.stdout.contains("Signing secret"), "{add:?}");
    assert!(add.stdout.contains("http://127.0.0.1/…"), "{add:?}");
    assert!(!add.all().contains("PathToken0123456789"), "{add:?}");
    let bad = env.run(
        &[
            "webhook",
            "add",
            "--name",
            "x",
            "--events",
            "everything",
            "--url-stdin",
        ],
        Some(&url),
    );
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("is not an event"), "{bad:?}");

    let list = env.run(&["webhook", "list"], None);
    assert_eq!(list.code, 0, "{list:?}");
    assert!(
        list.stdout.contains("soc") && list.stdout.contains("sync_failed,immediate_finding"),
        "{list:?}"
    );

    let test = env.run(&["webhook", "test", "SOC"], None);
    assert_eq!(test.code, 0, "{test:?}");
    assert!(test.stdout.contains("Test delivered"), "{test:?}");
    let got = seen.lock().expect("lock").clone();
    assert_eq!(got.len(), 1);
    let request = got[0].to_ascii_lowercase();
    assert!(
        request.starts_with("post /hook/pathtoken0123456789"),
        "{request}"
    );
    assert!(request.contains("x-rampart-event: test"), "{request}");
    assert!(
        request.contains("x-rampart-signature: sha256="),
        "{request}"
    );
    let list = env.run(&["webhook", "list"], None);
    assert!(list.stdout.contains("delivered"), "{list:?}");

    let remove = env.run(&["webhook", "remove", "soc"], None);
    assert_eq!(remove.code, 0, "{remove:?}");
    let list = env.run(&["webhook", "list"], None);
    assert!(!list.stdout.contains("soc"), "{list:?}");
    let gone = env.run(&["webhook", "test", "soc"], None);
    assert_eq!(gone.code, 2, "{gone:?}");
}
