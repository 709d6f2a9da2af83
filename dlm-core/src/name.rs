//! [`Name`]: a resource or lockspace name of at most 64 bytes, stored
//! inline.

use crate::Errno;
use core::fmt;

/// The longest resource or lockspace name, in bytes (`DLM_RESNAME_MAXLEN`,
/// `DLM_LOCKSPACE_LEN`).
pub const NAME_MAX: usize = dlm_sys::DLM_RESNAME_MAXLEN as usize;

/// A binary name of 0..=64 bytes. Resource names may be empty and may hold
/// any byte; lockspace names are 1..=64 bytes without NUL (checked where a
/// lockspace name is expected).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    len: u8,
    bytes: [u8; NAME_MAX],
}

impl Name {
    /// The empty name.
    pub const EMPTY: Name = Name {
        len: 0,
        bytes: [0; NAME_MAX],
    };

    /// A name holding exactly `bytes`.
    ///
    /// # Errors
    /// EINVAL if `bytes` is longer than 64 bytes.
    pub fn new(bytes: &[u8]) -> Result<Name, Errno> {
        if bytes.len() > NAME_MAX {
            return Err(Errno::EINVAL);
        }
        let mut name = Name::EMPTY;
        name.bytes[..bytes.len()].copy_from_slice(bytes);
        name.len = bytes.len() as u8;
        Ok(name)
    }

    /// A lockspace name: 1..=64 bytes, no NUL.
    ///
    /// # Errors
    /// EINVAL if empty, longer than 64 bytes or containing a NUL byte.
    pub fn lockspace(bytes: &[u8]) -> Result<Name, Errno> {
        if bytes.is_empty() || bytes.contains(&0) {
            return Err(Errno::EINVAL);
        }
        Name::new(bytes)
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The name zero-padded to 64 bytes: the kernel (6.12) treats two
    /// resource names as the same resource when these are equal, so
    /// `"abc"` and `"abc\0"` name one resource.
    pub fn padded(&self) -> &[u8; NAME_MAX] {
        &self.bytes
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the name is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Name {
    fn default() -> Self {
        Name::EMPTY
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name(\"{}\")", self)
    }
}

impl fmt::Display for Name {
    /// Printable ASCII as is, other bytes as `\xNN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.as_bytes() {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(Name::new(&[b'a'; 64]).is_ok());
        assert_eq!(Name::new(&[b'a'; 65]), Err(Errno::EINVAL));
        assert_eq!(Name::lockspace(b""), Err(Errno::EINVAL));
        assert_eq!(Name::lockspace(b"a\0b"), Err(Errno::EINVAL));
        let a = Name::new(b"abc").unwrap();
        let b = Name::new(b"abc\0").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.padded(), b.padded());
        assert_eq!(format!("{}", Name::new(b"r\x01").unwrap()), "r\\x01");
    }
}
