//! Namespace tokens: when namespaces are encrypted, a plugin names its namespace with a token
//! that the scheduler side minted (`perfpipe namespace-token NAME`), so it can reach only the
//! namespace its token names.
//!
//! A token is `base64url(nonce || AES-256-GCM(key, nonce, {"ns": NAME, "ts": SECONDS}))`, with a
//! random 96-bit nonce and no padding. Opening one checks the authentication tag (a tampered or
//! foreign token fails), then that `ts` is within the error margin of now (a stale or future
//! token fails). The key is 32 bytes, given in config as 64 hex digits.

use std::time::Duration;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Bytes of the nonce at the head of a token.
const NONCE_LEN: usize = 12;

/// Why a token was refused (the API answers 403 with the message).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    /// Not base64url, too short, or its tag does not verify: garbage, tampered, or sealed with
    /// another key.
    #[error("namespace is not a valid token for this node")]
    Invalid,
    /// Sealed too long ago, or in the future, beyond the margin.
    #[error("namespace token is from {age_seconds:.0} s away from now, beyond the margin of {margin_seconds} s")]
    Stale {
        age_seconds: f64,
        margin_seconds: u64,
    },
}

/// The configured key is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("a namespace key is 64 hex digits (32 bytes), got {0} characters")]
pub struct BadKey(usize);

#[derive(Serialize, Deserialize)]
struct Sealed {
    ns: String,
    ts: f64,
}

/// The key namespace tokens are sealed with.
pub struct NamespaceKey(Aes256Gcm);

impl NamespaceKey {
    /// The key from 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<NamespaceKey, BadKey> {
        let hex = hex.trim();
        let bytes: Option<Vec<u8>> = (hex.len() == 64)
            .then(|| {
                (0..32)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                    .collect()
            })
            .flatten();
        let bytes = bytes.ok_or(BadKey(hex.len()))?;
        Ok(NamespaceKey(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(
            &bytes,
        ))))
    }

    /// A token for `namespace` sealed at `now` (seconds since the epoch).
    pub fn seal(&self, namespace: &str, now: f64) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let plain = serde_json::to_vec(&Sealed {
            ns: namespace.to_owned(),
            ts: now,
        })
        .expect("a string and a float serialize");
        let sealed = self
            .0
            .encrypt(&nonce, plain.as_slice())
            .expect("AES-GCM seals any message this short");
        let mut token = nonce.to_vec();
        token.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The namespace `token` names, if it verifies and was sealed within `margin` of `now`.
    pub fn open(&self, token: &str, now: f64, margin: Duration) -> Result<String, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|_| TokenError::Invalid)?;
        if bytes.len() <= NONCE_LEN {
            return Err(TokenError::Invalid);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| TokenError::Invalid)?;
        let opened: Sealed = serde_json::from_slice(&plain).map_err(|_| TokenError::Invalid)?;
        let age = now - opened.ts;
        if !age.is_finite() || age.abs() > margin.as_secs_f64() {
            return Err(TokenError::Stale {
                age_seconds: age,
                margin_seconds: margin.as_secs(),
            });
        }
        Ok(opened.ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const MARGIN: Duration = Duration::from_secs(60);

    #[test]
    fn a_token_opens_to_its_namespace_within_the_margin() {
        let key = NamespaceKey::from_hex(KEY).unwrap();
        let token = key.seal("aws-checks", 1_000_000.0);
        assert_eq!(key.open(&token, 1_000_030.0, MARGIN).unwrap(), "aws-checks");
        assert_eq!(key.open(&token, 999_950.0, MARGIN).unwrap(), "aws-checks");
        assert!(matches!(
            key.open(&token, 1_000_061.0, MARGIN),
            Err(TokenError::Stale { .. })
        ));
        // Two tokens for one namespace differ (fresh nonce each time).
        assert_ne!(token, key.seal("aws-checks", 1_000_000.0));
    }

    #[test]
    fn tampered_foreign_and_garbage_tokens_are_invalid() {
        let key = NamespaceKey::from_hex(KEY).unwrap();
        let other = NamespaceKey::from_hex(&KEY.replace("1f", "ff")).unwrap();
        let token = key.seal("a", 5.0);
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        for bad in [
            tampered.as_str(),
            &other.seal("a", 5.0),
            "garbage",
            "",
            "a|b",
        ] {
            assert_eq!(
                key.open(bad, 5.0, MARGIN),
                Err(TokenError::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_are_64_hex_digits() {
        assert!(NamespaceKey::from_hex(&KEY[..62]).is_err());
        assert!(NamespaceKey::from_hex(&KEY.replace('0', "g")).is_err());
    }
}
