//! Client secrets at rest.
//!
//! Secrets are sealed with XChaCha20-Poly1305 (random 192-bit nonces are safe to draw at random; the
//! cipher is pure Rust). The integration's name is the associated data, so a ciphertext copied onto
//! another integration's row does not decrypt. The 256-bit master key comes from `RAMPART_MASTER_KEY`
//! (64 hex characters or base64 of 32 bytes) or from a key file created on first use with mode 0600.
//! A key file others can read is refused, and so is creating a new key when secrets sealed with
//! the old one are stored (a new key could never open them).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// The environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "RAMPART_MASTER_KEY";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "{MASTER_KEY_ENV} is set but is not a 256-bit key: give 64 hexadecimal characters or the base64 of 32 bytes (for example from `openssl rand -hex 32`)"
    )]
    BadEnvKey,
    #[error(
        "the master key file {path} is not a 256-bit key (64 hexadecimal characters); restore it from your backup, or set {MASTER_KEY_ENV}"
    )]
    BadKeyFile { path: PathBuf },
    #[error(
        "the master key file {path} can be read by other users of this machine (mode {mode:o}); anyone who can read it can decrypt the stored client secrets. Run `chmod 600 {path}` (as its owner), then start again"
    )]
    KeyFileExposed { path: PathBuf, mode: u32 },
    #[error(
        "the master key file {path} does not exist, but the database holds client secrets sealed with a master key. Restore the key file from your backup to {path} (or point RAMPART_KEY_FILE at it, or set {MASTER_KEY_ENV} to the key); Rampart does not create a new key, which could not open them. Without the old key, delete and add the integrations again with their client secrets"
    )]
    KeyFileMissing { path: PathBuf },
    #[error("cannot read or create the master key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the stored client secret of integration '{integration}' cannot be decrypted with this master key: was {MASTER_KEY_ENV} or the key file changed? Restore the original key, or enter the client secret again"
    )]
    Undecryptable { integration: String },
    #[error("the client secret could not be encrypted")]
    Encrypt,
}

/// What [`Vault::open`] does when the key file does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKey {
    /// Create a new key: nothing sealed is stored yet.
    Create,
    /// Fail with [`VaultError::KeyFileMissing`]: the database holds secrets sealed with a key.
    Refuse,
}

/// A sealed secret: what the store keeps.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(..)")
    }
}

/// Seals and opens client secrets with the master key.
pub struct Vault {
    cipher: XChaCha20Poly1305,
    /// The master key, kept only to derive keys for other purposes ([`Vault::derive_key`]).
    master: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

impl Vault {
    /// A vault over a raw key.
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
            master: Zeroizing::new(*key),
        }
    }

    /// A key for `purpose` (HMAC-SHA256 of the purpose under the master key), for example to sign
    /// the portal's sign-in form token. Every process that shares the master key derives the same
    /// key, and it reveals nothing of the master key or of the keys of other purposes.
    pub fn derive_key(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        use hmac::{KeyInit as _, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.master.as_slice())
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// The key from `RAMPART_MASTER_KEY` if set, else from `key_file`. A missing key file is
    /// created (mode 0600) only when `missing` allows it: pass [`MissingKey::Refuse`] when the
    /// database already holds sealed secrets. A key file readable by group or others is refused.
    pub fn open(key_file: &Path, missing: MissingKey) -> Result<Self, VaultError> {
        if let Ok(value) = std::env::var(MASTER_KEY_ENV) {
            let key = decode_key(&value).ok_or(VaultError::BadEnvKey)?;
            return Ok(Self::from_key(&key));
        }
        let key = load_or_create_key_file(key_file, missing)?;
        Ok(Self::from_key(&key))
    }

    pub fn seal(&self, integration: &str, secret: &SecretString) -> Result<Sealed, VaultError> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: integration.as_bytes(),
                },
            )
            .map_err(|_| VaultError::Encrypt)?;
        Ok(Sealed {
            ciphertext,
            nonce: nonce.to_vec(),
        })
    }

    pub fn open_secret(
        &self,
        integration: &str,
        sealed: &Sealed,
    ) -> Result<SecretString, VaultError> {
        let undecryptable = || VaultError::Undecryptable {
            integration: integration.to_owned(),
        };
        let nonce: [u8; 24] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| undecryptable())?;
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: integration.as_bytes(),
                    },
                )
                .map_err(|_| undecryptable())?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| undecryptable())?;
        Ok(SecretString::from(text.to_owned()))
    }
}

fn decode_key(value: &str) -> Option<[u8; 32]> {
    let value = value.trim();
    let bytes = if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&value[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .ok()?
    };
    bytes.try_into().ok()
}

/// Refuses a key file that group or others may read: the key decrypts every stored secret.
fn check_private(path: &Path) -> Result<(), VaultError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(|source| VaultError::KeyFile {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(VaultError::KeyFileExposed {
                path: path.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn read_key_file(path: &Path) -> Result<[u8; 32], VaultError> {
    check_private(path)?;
    let text = fs::read_to_string(path).map_err(|source| VaultError::KeyFile {
        path: path.to_owned(),
        source,
    })?;
    decode_key(&text).ok_or_else(|| VaultError::BadKeyFile {
        path: path.to_owned(),
    })
}

fn load_or_create_key_file(path: &Path, missing: MissingKey) -> Result<[u8; 32], VaultError> {
    let io = |source| VaultError::KeyFile {
        path: path.to_owned(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(_) => read_key_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing == MissingKey::Refuse => {
            Err(VaultError::KeyFileMissing {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(io)?;
            }
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(path) {
                Ok(mut file) => {
                    file.write_all(hex.as_bytes()).map_err(io)?;
                    file.write_all(b"\n").map_err(io)?;
                    file.sync_all().map_err(io)?;
                    Ok(key)
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn round_trip_and_binding_to_the_integration() {
        let vault = Vault::from_key(&[7u8; 32]);
        let sealed = vault.seal("contoso", &secret("s3cr3t~value")).unwrap();
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"s3cr3t"));
        let opened = vault.open_secret("contoso", &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "s3cr3t~value");
        assert!(matches!(
            vault.open_secret("fabrikam", &sealed),
            Err(VaultError::Undecryptable { .. })
        ));
        let other = Vault::from_key(&[8u8; 32]);
        assert!(other.open_secret("contoso", &sealed).is_err());
    }

    #[test]
    fn derived_keys_are_stable_per_purpose_and_key() {
        let a = Vault::from_key(&[1u8; 32]);
        let b = Vault::from_key(&[2u8; 32]);
        assert_eq!(
            *a.derive_key("form"),
            *Vault::from_key(&[1u8; 32]).derive_key("form")
        );
        assert_ne!(*a.derive_key("form"), *a.derive_key("other"));
        assert_ne!(*a.derive_key("form"), *b.derive_key("form"));
        assert_ne!(*a.derive_key("form"), [1u8; 32]);
    }

    #[test]
    fn nonces_differ_between_seals() {
        let vault = Vault::from_key(&[1u8; 32]);
        let a = vault.seal("x", &secret("same")).unwrap();
        let b = vault.seal("x", &secret("same")).unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let first = load_or_create_key_file(&path, MissingKey::Create).unwrap();
        let again = load_or_create_key_file(&path, MissingKey::Refuse).unwrap();
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    /// Issue 12, item 6a: a key file others can read is refused, with the command that fixes it.
    #[cfg(unix)]
    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = load_or_create_key_file(&path, MissingKey::Create).unwrap();
        for mode in [0o644, 0o640, 0o604] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = load_or_create_key_file(&path, MissingKey::Refuse).unwrap_err();
            assert!(
                matches!(err, VaultError::KeyFileExposed { .. }),
                "{mode:o}: {err:?}"
            );
            let text = err.to_string();
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(
            load_or_create_key_file(&path, MissingKey::Refuse).unwrap(),
            key
        );
    }

    /// Issue 12, item 6a: with sealed secrets stored, a missing key file is an error saying how to
    /// restore it, and no new key file appears.
    #[test]
    fn a_missing_key_file_is_not_replaced_when_secrets_are_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let err = load_or_create_key_file(&path, MissingKey::Refuse).unwrap_err();
        assert!(matches!(err, VaultError::KeyFileMissing { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("Restore the key file"), "{text}");
        assert!(text.contains(MASTER_KEY_ENV), "{text}");
        assert!(!path.exists());
    }

    #[test]
    fn keys_decode_from_hex_or_base64_only_at_256_bits() {
        assert!(decode_key(&"ab".repeat(32)).is_some());
        assert!(decode_key(&base64::engine::general_purpose::STANDARD.encode([3u8; 32])).is_some());
        assert!(decode_key("short").is_none());
        assert!(decode_key(&"ab".repeat(31)).is_none());
    }

    #[test]
    fn debug_output_reveals_nothing() {
        let vault = Vault::from_key(&[2u8; 32]);
        let sealed = vault.seal("x", &secret("hunter2hunter2")).unwrap();
        assert_eq!(format!("{sealed:?}"), "Sealed(..)");
        assert_eq!(format!("{vault:?}"), "Vault(..)");
    }
}
