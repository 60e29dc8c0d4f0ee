//! `rampart serve --tls-cert FILE --tls-key FILE` through the real binary: HTTPS with a
//! throwaway self-signed certificate, SIGHUP re-reading it, and the errors wrong settings get.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{Run, run};

// The web tests' certificate helper, shared rather than copied.
#[path = "../../../web/tests/web/test_cert.rs"]
mod test_cert;
use test_cert::TestCert;

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// `rampart ARGS` in `dir` on a SQLite file there, none of the settings' variables inherited.
fn rampart(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    cmd.current_dir(dir).arg("--database").arg(format!(
        "sqlite://{}",
        dir.join("data").join("rampart.db").display()
    ));
    for var in [
        "DATABASE_URL",
        "RAMPART_CONFIG",
        "RAMPART_TLS_CERT",
        "RAMPART_TLS_KEY",
        "RAMPART_MASTER_KEY",
        "RAMPART_KEV_URL",
        "RAMPART_TRUSTED_PROXIES",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn serve_refuses_half_or_wrong_tls_settings_before_it_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = TestCert::new(dir.path(), "good");
    let other = TestCert::new(dir.path(), "other");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate at all\n").expect("write");
    let serve = |args: &[&str], env: &[(&str, &str)]| -> Run {
        let mut cmd = rampart(dir.path());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--no-kev-refresh"])
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd, None)
    };

    let cases: Vec<(Run, &str)> = vec![
        (
            serve(&["--tls-cert", path(&good.cert)], &[]),
            "--tls-cert is set but --tls-key is not",
        ),
        (
            serve(&["--tls-key", path(&good.key)], &[]),
            "--tls-key is set but --tls-cert is not",
        ),
        // The environment counts like the options.
        (
            serve(&[], &[("RAMPART_TLS_CERT", path(&good.cert))]),
            "--tls-cert is set but --tls-key is not",
        ),
        (
            serve(
                &["--tls-cert", path(&garbage), "--tls-key", path(&good.key)],
                &[],
            ),
            "holds no certificate in PEM format",
        ),
        (
            serve(
                &["--tls-cert", path(&good.cert), "--tls-key", path(&garbage)],
                &[],
            ),
            "holds no private key in PEM format",
        ),
        (
            serve(
                &[
                    "--tls-cert",
                    path(&good.cert),
                    "--tls-key",
                    path(&other.key),
                ],
                &[],
            ),
            "does not belong to the certificate",
        ),
        (
            serve(
                &["--tls-cert", path(&good.cert), "--tls-key", "no-such.key"],
                &[],
            ),
            "cannot read the TLS key file no-such.key",
        ),
    ];
    for (run, expected) in cases {
        assert_eq!(run.code, 2, "{expected}: {run:?}");
        assert!(run.stderr.contains(expected), "{expected}: {run:?}");
        for line in good.key_lines().into_iter().chain(other.key_lines()) {
            assert!(!run.all().contains(line), "the key is quoted: {run:?}");
        }
    }
    // demo takes the same options, and refuses the same way before its emulator starts.
    let demo = run(
        rampart(dir.path()).args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--tls-key",
            path(&good.key),
        ]),
        None,
    );
    assert_eq!(demo.code, 2, "{demo:?}");
    assert!(
        demo.stderr
            .contains("--tls-key is set but --tls-cert is not"),
        "{demo:?}"
    );
    // Refused before anything started: no database was created.
    assert!(!dir.path().join("data").exists());

    // rampart.toml with a certificate but no key: the same refusal.
    std::fs::write(
        dir.path().join("rampart.toml"),
        format!("[serve]\ntls_cert = \"{}\"\n", path(&good.cert)),
    )
    .expect("write rampart.toml");
    let half = serve(&[], &[]);
    assert_eq!(half.code, 2, "{half:?}");
    assert!(
        half.stderr
            .contains("--tls-cert is set but --tls-key is not"),
        "{half:?}"
    );
    let checked = run(rampart(dir.path()).args(["config", "check"]), None);
    assert_eq!(checked.code, 0, "{checked:?}");
    assert!(
        checked
            .stdout
            .contains("# HTTPS: rampart serve will refuse to start"),
        "{checked:?}"
    );

    // Both in the file: config check reads them and says they match.
    std::fs::write(
        dir.path().join("rampart.toml"),
        format!(
            "[serve]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            path(&good.cert),
            path(&good.key)
        ),
    )
    .expect("write rampart.toml");
    let checked = run(rampart(dir.path()).args(["config", "check"]), None);
    assert_eq!(checked.code, 0, "{checked:?}");
    assert!(checked.stdout.contains("tls_cert = "), "{checked:?}");
    assert!(checked.stdout.contains("# HTTPS: on"), "{checked:?}");
}

/// A running `rampart serve`, killed when dropped.
struct Server {
    child: Child,
    url: String,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &Path, cert: &TestCert) -> Server {
        let mut child = rampart(dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-kev-refresh"])
            .args(["--tls-cert", path(&cert.cert), "--tls-key", path(&cert.key)])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("rampart serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        // Read standard output to its end: a closed pipe would make the server's next line
        // fail (and the server with it).
        let stdout = child.stdout.take().expect("stdout");
        let (found, url) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.strip_prefix("Rampart portal and API at ") {
                    let _ = found.send(at.trim().to_owned());
                }
            }
        });
        let url = url.recv_timeout(Duration::from_secs(60)).ok();
        let url = url.expect("serve prints where it listens");
        Server {
            child,
            url,
            stderr: received,
        }
    }

    /// Waits (up to a minute) for a line of the server's log containing `text`.
    fn wait_for_log(&self, text: &str) -> String {
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with '{text}': {e}"),
            }
        }
    }

    fn hang_up(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

#[cfg(unix)]
#[test]
fn serve_speaks_https_and_rereads_its_certificate_on_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = TestCert::new(dir.path(), "server");
    // An admin exists, so /login is the sign-in page rather than a way to the first-run setup.
    let added = run(
        rampart(dir.path()).args([
            "user",
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
        ]),
        Some("correct horse battery staple"),
    );
    assert_eq!(added.code, 0, "{added:?}");
    let server = Server::start(dir.path(), &first);
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let login = format!("{}/login", server.url);
    let readyz = format!("{}/readyz", server.url);

    runtime.block_on(async {
        let res = first.client().get(&login).send().await.expect("https");
        assert_eq!(res.status(), reqwest::StatusCode::OK);
        let cookie = res.headers()["set-cookie"].to_str().expect("ascii");
        assert!(cookie.contains("; Secure"), "{cookie}");
        assert!(res.headers().contains_key("strict-transport-security"));
        let ready = first.client().get(&readyz).send().await.expect("https");
        assert_eq!(ready.status(), reqwest::StatusCode::OK);

        // Plain http to the HTTPS port: told to use https, never served.
        let plain = login.replacen("https://", "http://", 1);
        let res = reqwest::get(&plain).await.expect("an answer");
        assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
        let mut text = Vec::new();
        let mut res = res;
        while let Some(chunk) = res.chunk().await.expect("body") {
            text.extend_from_slice(&chunk);
            assert!(text.len() < 4096, "a short answer");
        }
        assert!(String::from_utf8_lossy(&text).contains("https://"));
    });

    // A renewal writes a new pair over the files; SIGHUP makes the server read it.
    let renewed = TestCert::new(dir.path(), "renewed");
    std::fs::write(&first.cert, &renewed.cert_pem).expect("write");
    std::fs::write(&first.key, &renewed.key_pem).expect("write");
    server.hang_up();
    server.wait_for_log("Reloaded the TLS certificate");
    runtime.block_on(async {
        let res = renewed.client().get(&readyz).send().await.expect("https");
        assert_eq!(res.status(), reqwest::StatusCode::OK);
        assert!(first.client().get(&readyz).send().await.is_err());
    });

    // A broken renewal: logged, and the server goes on with the pair it has.
    std::fs::write(&first.key, "garbage\n").expect("write");
    server.hang_up();
    let line = server.wait_for_log("Reloading the TLS certificate failed");
    assert!(line.contains("holds no private key"), "{line}");
    runtime.block_on(async {
        let res = renewed.client().get(&readyz).send().await.expect("https");
        assert_eq!(res.status(), reqwest::StatusCode::OK);
    });
}
