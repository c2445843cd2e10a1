//! sha256 digests: the `sha256:<hex>` form, a hashing reader, and the check of a blob name.
//!
//! Owns nothing on disk; pure helpers used by the store and the importers.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

/// Lowercase hex of `bytes` (sha2 0.11 outputs no longer implement `LowerHex`).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// `sha256:<hex>` of `data`.
pub fn sha256_of(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// The hex part of a `sha256:<64 hex>` digest, or None when `digest` is not one.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    is_hex64(hex).then_some(hex)
}

/// True for exactly 64 lowercase hex digits.
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `sha256:1234567890ab…` shortened for messages and listings: the first 12 hex digits.
pub fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// The hex part of `sha256:<hex>` (the whole string when it has no algorithm prefix).
pub fn hex_part(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Hashes and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reads what is left (so that the digest covers the whole stream), then returns
    /// `sha256:<hex>` and the total byte count.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((
            format!("sha256:{}", hex(&self.hasher.finalize())),
            self.count,
        ))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256_of(b""), empty);
        let (d, n) = HashingReader::new(&b""[..]).finish().unwrap();
        assert_eq!((d.as_str(), n), (empty, 0));
        for (input, hex) in [
            (empty, Some(&empty[7..])),
            ("sha256:abc", None),
            (
                "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                None,
            ),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                None,
            ),
        ] {
            assert_eq!(sha256_hex(input), hex, "{input}");
        }
        assert_eq!(short(empty), "e3b0c44298fc");
    }
}
