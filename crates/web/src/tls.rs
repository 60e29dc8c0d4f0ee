//! HTTPS served by Rampart itself: `rampart serve --tls-cert FILE --tls-key FILE`.
//!
//! rustls with the aws-lc-rs crypto provider, the same TLS stack reqwest already brings into the
//! build (no OpenSSL, no second provider), and rustls' safe defaults: TLS 1.2 and 1.3 only, its
//! default cipher suites, ALPN `h2` and `http/1.1`. The files are read and checked before the
//! server binds, and every error says in words what is wrong with which file; nothing read from
//! the key file ever reaches a message or a log. [`Tls::reload`] (on SIGHUP) reads both again and
//! keeps serving the old pair when the new one is wrong, so a renewal gone bad does not take the
//! portal down.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use zeroize::Zeroizing;

/// `Strict-Transport-Security` sent on every answer while Rampart serves HTTPS itself: browsers
/// then use https for a year, even when someone types or links plain http. No
/// `includeSubDomains`: the domain's other hosts are not Rampart's to decide for.
pub(crate) const HSTS: &str = "max-age=31536000";

/// Why the certificate or key cannot be used. The messages name the file and say what to do;
/// they never hold anything read from the files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read the TLS {role} file {path}: {source}; make it readable by the user Rampart runs as"
    )]
    Unreadable {
        role: FileRole,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the TLS certificate file {0} holds no certificate in PEM format: give the server's certificate (then its intermediates) as '-----BEGIN CERTIFICATE-----' sections"
    )]
    NoCertificate(PathBuf),
    #[error(
        "the TLS key file {0} holds no private key in PEM format: give the certificate's private key, unencrypted, as a '-----BEGIN PRIVATE KEY-----' (or 'RSA PRIVATE KEY', 'EC PRIVATE KEY') section"
    )]
    NoKey(PathBuf),
    #[error(
        "the TLS {role} file {path} is damaged: a PEM section has invalid base64 or no END line; export it again"
    )]
    DamagedPem { role: FileRole, path: PathBuf },
    #[error(
        "the TLS key file {0} holds an encrypted private key, and Rampart cannot ask for its passphrase: decrypt it (openssl pkey -in KEY -out KEY.plain) and keep the result readable only by the user Rampart runs as"
    )]
    EncryptedKey(PathBuf),
    #[error(
        "the TLS key file {0} holds a private key Rampart cannot use: give an RSA (2048 bits or more), ECDSA (P-256, P-384) or Ed25519 key"
    )]
    UnusableKey(PathBuf),
    #[error(
        "the TLS certificate file {0} holds a certificate that is not valid X.509; export it again in PEM format"
    )]
    BadCertificate(PathBuf),
    #[error(
        "the TLS key file {key} does not belong to the certificate in {cert}: their public keys differ. Give the key the certificate was issued for, and put the server's own certificate first in the certificate file (its intermediates after it)"
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot use the TLS certificate {cert} with the key {key}: {reason}")]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// Which of the two files an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    Certificate,
    Key,
}

impl fmt::Display for FileRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileRole::Certificate => "certificate",
            FileRole::Key => "key",
        })
    }
}

/// A checked certificate and key, ready to serve HTTPS with.
#[derive(Clone)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Arc<CurrentCert>,
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for Tls {
    // The paths only: the key stays out of every debug dump.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificate chain (PEM, the server's certificate first) and its private key
    /// (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted) and checks that they belong together.
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.into(), key.into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certified = certified_key(&cert, &key, &provider)?;
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(certified))));
        let unusable = |e: rustls::Error| TlsError::Unusable {
            cert: cert.clone(),
            key: key.clone(),
            reason: e.to_string(),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(unusable)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            cert,
            key,
            provider,
            current,
            config: Arc::new(config),
        })
    }

    /// Reads both files again (a renewed certificate) and serves new connections with them;
    /// when they are wrong, the pair in use stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certified = certified_key(&self.cert, &self.key, &self.provider)?;
        *self
            .current
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.clone())
    }
}

/// Re-reads the certificate and key on each SIGHUP (`systemctl reload`, `kill -HUP`, certbot's
/// deploy hook), as nginx does. `None` where there are no such signals or they cannot be
/// listened to (then a restart picks up a renewed certificate).
pub(crate) fn reload_on_hangup(tls: Tls) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(message = "Cannot listen to SIGHUP: restart Rampart to use a renewed TLS certificate.", %error);
                return None;
            }
        };
        Some(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let reloaded = tokio::task::spawn_blocking({
                    let tls = tls.clone();
                    move || tls.reload()
                })
                .await;
                match reloaded {
                    Ok(Ok(())) => tracing::info!(
                        message = "Reloaded the TLS certificate and key (SIGHUP).",
                        cert = %tls.cert.display()
                    ),
                    Ok(Err(error)) => tracing::error!(
                        message = "Reloading the TLS certificate failed (SIGHUP); still serving the previous one.",
                        %error
                    ),
                    Err(error) => tracing::error!(
                        message = "Reloading the TLS certificate failed (SIGHUP); still serving the previous one.",
                        %error
                    ),
                }
            }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = tls;
        None
    }
}

/// The certificate and key every handshake uses: swapped whole by [`Tls::reload`].
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(cert_path)?;
    let key = read_key(key_path)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            }
        }
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            TlsError::BadCertificate(cert_path.to_owned())
        }
        // The key provider's only refusal: "failed to parse private key as RSA, ECDSA, or EdDSA".
        rustls::Error::General(_) => TlsError::UnusableKey(key_path.to_owned()),
        other => TlsError::Unusable {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            reason: other.to_string(),
        },
    })
}

fn read(path: &Path, role: FileRole) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| TlsError::Unreadable {
            role,
            path: path.to_owned(),
            source,
        })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(path, FileRole::Certificate)?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::DamagedPem {
            role: FileRole::Certificate,
            path: path.to_owned(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read(path, FileRole::Key)?;
    // PKCS#8's encrypted form and OpenSSL's legacy encrypted PEM: rustls reads neither, and
    // "no key found" would send the operator looking in the wrong place.
    if contains(&text, b"ENCRYPTED PRIVATE KEY") || contains(&text, b"Proc-Type: 4,ENCRYPTED") {
        return Err(TlsError::EncryptedKey(path.to_owned()));
    }
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey(path.to_owned()),
        // Never the parser's own words: they may quote a line of the key.
        _ => TlsError::DamagedPem {
            role: FileRole::Key,
            path: path.to_owned(),
        },
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
