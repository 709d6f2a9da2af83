//! [`Mode`]: the six lock modes and the two mode tables of the kernel DLM
//! (compatibility and QUECVT).

use crate::Errno;

/// A lock mode, weakest to strongest.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Mode {
    /// Null: compatible with everything; keeps a resource (and its LVB)
    /// alive.
    Nl = 0,
    /// Concurrent read.
    Cr = 1,
    /// Concurrent write.
    Cw = 2,
    /// Protected read.
    Pr = 3,
    /// Protected write.
    Pw = 4,
    /// Exclusive.
    Ex = 5,
}

/// `COMPAT[a][b]`: may modes `a` and `b` be granted together (docs/semantics.md C.2).
const COMPAT: [[bool; 6]; 6] = {
    const T: bool = true;
    const F: bool = false;
    [
        [T, T, T, T, T, T],
        [T, T, T, T, T, F],
        [T, T, T, F, F, F],
        [T, T, F, T, F, F],
        [T, T, F, F, F, F],
        [T, F, F, F, F, F],
    ]
};

/// `QUECVT[gr][rq]`: is a QUECVT conversion from `gr` to `rq` allowed.
const QUECVT: [[bool; 6]; 6] = {
    const T: bool = true;
    const F: bool = false;
    [
        [F, T, T, T, T, T],
        [F, F, T, T, T, T],
        [F, F, F, T, T, T],
        [F, F, T, F, T, T],
        [F, F, F, F, F, T],
        [F, F, F, F, F, F],
    ]
};

impl Mode {
    /// All modes, weakest first.
    pub const ALL: [Mode; 6] = [Mode::Nl, Mode::Cr, Mode::Cw, Mode::Pr, Mode::Pw, Mode::Ex];

    /// The mode with this number (0 = NL … 5 = EX).
    ///
    /// # Errors
    /// EINVAL for any other value, as the kernel answers.
    pub fn from_raw(raw: i64) -> Result<Mode, Errno> {
        match raw {
            0..=5 => Ok(Mode::ALL[raw as usize]),
            _ => Err(Errno::EINVAL),
        }
    }

    /// The mode's number, as the kernel and libdlm.h spell it.
    pub const fn raw(self) -> u8 {
        self as u8
    }

    /// Whether a lock in `self` and a lock in `other` may be granted at
    /// the same time.
    pub const fn compatible(self, other: Mode) -> bool {
        COMPAT[self as usize][other as usize]
    }

    /// Whether a conversion from granted mode `self` to `to` may carry
    /// QUECVT (docs/semantics.md C.2's QUECVT matrix).
    pub const fn quecvt_allowed(self, to: Mode) -> bool {
        QUECVT[self as usize][to as usize]
    }

    /// The two-letter name used by the kernel's debug output and our tools.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Nl => "NL",
            Mode::Cr => "CR",
            Mode::Cw => "CW",
            Mode::Pr => "PR",
            Mode::Pw => "PW",
            Mode::Ex => "EX",
        }
    }
}

impl core::fmt::Display for Mode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Mode {
    type Err = Errno;

    /// Parses `NL`, `CR`, `CW`, `PR`, `PW` or `EX` (any case).
    fn from_str(s: &str) -> Result<Mode, Errno> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or(Errno::EINVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compat_is_symmetric_and_matches_spec() {
        for a in Mode::ALL {
            for b in Mode::ALL {
                assert_eq!(a.compatible(b), b.compatible(a));
            }
            assert!(Mode::Nl.compatible(a));
        }
        assert!(!Mode::Ex.compatible(Mode::Cr));
        assert!(Mode::Pr.compatible(Mode::Pr));
        assert!(!Mode::Pr.compatible(Mode::Cw));
        assert!(Mode::Cw.compatible(Mode::Cw));
        assert!(!Mode::Pw.compatible(Mode::Pw));
    }

    #[test]
    fn quecvt_matrix() {
        assert!(Mode::Cw.quecvt_allowed(Mode::Pr));
        assert!(Mode::Pr.quecvt_allowed(Mode::Cw));
        assert!(!Mode::Pr.quecvt_allowed(Mode::Nl));
        assert!(!Mode::Ex.quecvt_allowed(Mode::Ex));
        for m in Mode::ALL {
            assert!(!m.quecvt_allowed(m));
        }
    }

    #[test]
    fn parse_and_raw() {
        assert_eq!("ex".parse::<Mode>(), Ok(Mode::Ex));
        assert_eq!("XX".parse::<Mode>(), Err(Errno::EINVAL));
        assert_eq!(Mode::from_raw(6), Err(Errno::EINVAL));
        assert_eq!(Mode::from_raw(-1), Err(Errno::EINVAL));
        assert_eq!(Mode::from_raw(3).map(Mode::raw), Ok(3));
    }
}
