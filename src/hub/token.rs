//! Resume tokens: the secret that lets a client take its parked session back. 128 bits
//! from the OS's random source, shown as 32 hex digits, compared in constant time, and
//! never formatted by `Debug`.

use subtle::ConstantTimeEq;

use crate::protocol::ResumeToken;

/// Random bytes from the OS's source. Without one the server cannot make secrets at
/// all, and no session could be resumed safely: that is a broken host, not a client's
/// doing.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    getrandom::getrandom(&mut bytes).expect("the OS's random source failed");
    bytes
}

#[derive(Clone, PartialEq, Eq)]
pub struct Token([u8; 16]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    pub fn random() -> Self {
        Token(random_bytes())
    }

    /// The token as its client is given it.
    pub fn to_wire(&self) -> ResumeToken {
        use std::fmt::Write;
        let mut hex = String::with_capacity(32);
        for byte in self.0 {
            let _ = write!(hex, "{byte:02x}");
        }
        ResumeToken(hex)
    }

    /// The token's SHA-256: what a cluster keeps of a parked session's token, so that
    /// another node can check a token given to it without the token being stored.
    pub fn digest(&self) -> [u8; 32] {
        sha256(&self.0)
    }

    /// Whether `digest` is this token's [`Token::digest`], compared in constant time:
    /// how a node checks that another node was given this session's token.
    pub fn digest_is(&self, digest: &[u8; 32]) -> bool {
        self.digest().ct_eq(digest).into()
    }

    /// Whether `given` is this token. Its length and digits are checked first (they are
    /// no secret); the bytes are then compared in constant time.
    pub fn matches(&self, given: &ResumeToken) -> bool {
        let Some(bytes) = parse(&given.0) else {
            return false;
        };
        self.0.ct_eq(&bytes).into()
    }
}

/// Whether `given` is the token whose [`Token::digest`] is `digest`, compared in
/// constant time.
pub fn digest_matches(given: &ResumeToken, digest: &[u8; 32]) -> bool {
    parse(&given.0).is_some_and(|bytes| sha256(&bytes).ct_eq(digest).into())
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

fn parse(hex: &str) -> Option<[u8; 16]> {
    let hex = hex.as_bytes();
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0; 16];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_its_own_wire_form_only() {
        let token = Token::random();
        let wire = token.to_wire();
        assert_eq!(wire.0.len(), 32);
        assert!(token.matches(&wire));
        assert!(token.matches(&ResumeToken(wire.0.to_ascii_uppercase())));
        assert!(!Token::random().matches(&wire));
        for bad in [
            "",
            "zz",
            &wire.0[..31],
            &format!("{}0", wire.0),
            "é".repeat(16).as_str(),
        ] {
            assert!(!token.matches(&ResumeToken(bad.to_owned())), "{bad:?}");
        }
        assert_eq!(format!("{token:?}"), "Token(***)");
    }
}
