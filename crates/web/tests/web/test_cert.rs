//! A throwaway self-signed certificate for HTTPS tests, written as PEM files. Shared by the web
//! tests and the CLI's (`#[path]`-included there), so both serve and trust certificates alike.

use std::path::{Path, PathBuf};

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCert {
    pub fn new(dir: &Path, name: &str) -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("a self-signed certificate");
        let cert_pem = made.cert.pem();
        let key_pem = made.signing_key.serialize_pem();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &cert_pem).expect("write the certificate");
        std::fs::write(&key, &key_pem).expect("write the key");
        TestCert {
            cert_pem,
            key_pem,
            cert,
            key,
        }
    }

    /// A client that trusts this certificate and no other.
    pub fn client(&self) -> reqwest::Client {
        self.client_with(|b| b)
    }

    /// [`TestCert::client`] with more settings (HTTP/1 only, a TLS version cap).
    pub fn client_with(
        &self,
        configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).expect("PEM");
        configure(
            reqwest::Client::builder()
                .tls_certs_only([root])
                .redirect(reqwest::redirect::Policy::none()),
        )
        .build()
        .expect("client")
    }

    /// The lines of the key's base64: none may appear in any message or log.
    pub fn key_lines(&self) -> Vec<&str> {
        self.key_pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
            .collect()
    }
}
