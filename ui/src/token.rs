//! Bearer tokens for the REST API and the UI with security on: a
//! principal and an expiry signed with the cluster's token key
//! (HMAC-SHA256, RFC 2104), so the UI checks them without any state.
//!
//! A token reads `squall1:<expiry, s since the Unix epoch>:<principal>:<mac
//! hex>`; `squall token USER` issues one, `squall secure-init` one per
//! user.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

const PREFIX: &str = "squall1";

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// It is not of the form above.
    #[error("malformed token (expected squall1:<expiry>:<principal>:<signature>)")]
    Malformed,
    /// Its signature is not the cluster's.
    #[error("the token's signature is not this cluster's")]
    BadSignature,
    /// It expired.
    #[error("the token expired at {0} (s since the Unix epoch)")]
    Expired(u64),
}

/// A cluster's token key.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// The key `bytes` (at least 16).
    ///
    /// # Errors
    /// A message when the key is shorter.
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < 16 {
            return Err(format!(
                "a token key of {} bytes is too short (at least 16)",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    /// The key in file `path` (`squall.token.key.path`): its bytes, leading
    /// and trailing whitespace trimmed.
    ///
    /// # Errors
    /// A message naming the file when it cannot be read or is too short.
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        Self::new(text.trim().as_bytes().to_vec()).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn mac(&self, body: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(body.as_bytes());
        mac
    }

    /// A token for `principal` (no `:` in it) valid until `expires_at` (s
    /// since the Unix epoch).
    pub fn issue(&self, principal: &str, expires_at: u64) -> String {
        let body = format!("{PREFIX}:{expires_at}:{principal}");
        let tag = self.mac(&body).finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        format!("{body}:{hex}")
    }

    /// The principal `token` names, if it is signed with this key and not
    /// expired at `now` (s since the Unix epoch).
    ///
    /// # Errors
    /// [`TokenError`] naming why it is refused.
    pub fn verify(&self, token: &str, now: u64) -> Result<String, TokenError> {
        let (body, hex) = token.trim().rsplit_once(':').ok_or(TokenError::Malformed)?;
        let mut parts = body.splitn(3, ':');
        let (Some(PREFIX), Some(expiry), Some(principal)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let expiry: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
        if hex.len() != 64 || principal.is_empty() {
            return Err(TokenError::Malformed);
        }
        let tag: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(|_| TokenError::Malformed)?;
        self.mac(body)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        if now >= expiry {
            return Err(TokenError::Expired(expiry));
        }
        Ok(principal.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_principal_until_it_expires() {
        let key = TokenKey::new(b"0123456789abcdef0123".to_vec()).unwrap();
        let t = key.issue("alice", 1_000);
        assert_eq!(key.verify(&t, 999).unwrap(), "alice");
        assert_eq!(key.verify(&t, 1_000), Err(TokenError::Expired(1_000)));
        let other = TokenKey::new(b"another key, long enough".to_vec()).unwrap();
        assert_eq!(other.verify(&t, 0), Err(TokenError::BadSignature));
        let forged = t.replace("alice", "admin");
        assert_eq!(key.verify(&forged, 0), Err(TokenError::BadSignature));
        let later = t.replace(":1000:", ":9999:");
        assert_eq!(key.verify(&later, 0), Err(TokenError::BadSignature));
        for bad in [
            "",
            "squall1",
            "x:1:a:00",
            "squall1:x:a:00",
            &t[..t.len() - 2],
        ] {
            assert_eq!(key.verify(bad, 0), Err(TokenError::Malformed), "{bad}");
        }
        assert!(TokenKey::new(b"short".to_vec()).is_err());
    }
}
