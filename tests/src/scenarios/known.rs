//! The differences between a kernel and the spec, and between a kernel
//! and the engine (dlmd), that are known and explained in
//! docs/kernel-differences.md. The kernel tests fail on any difference not
//! listed here, and on a listed one that changed.

/// A known difference of one scenario.
pub struct Known {
    /// Kernel release prefix it applies to (`"6.1."`, `"6.12."`), or `""`
    /// for every kernel.
    pub kernel: &'static str,
    /// The scenario.
    pub id: &'static str,
    /// The kernel's trace lines that differ from the engine's (the `-`
    /// lines of [`super::diff`], without the `-`), in order.
    pub kernel_lines: &'static [&'static str],
    /// Whether the kernel also fails the spec's expectations here.
    pub spec_mismatch: bool,
    /// Why (a pointer into docs/kernel-differences.md).
    pub reason: &'static str,
}

/// Every known difference between a kernel and the engine.
pub const KNOWN: &[Known] = &[
    Known {
        kernel: "",
        id: "C9",
        kernel_lines: &[
            "REMOVE m FORCEFREE -> 0 (after O1 closed)",
            "open -> ENOENT",
        ],
        spec_mismatch: false,
        reason: "deliberate (README's table): the kernel blocks the remove until the \
                 opener closes; the engine (dlmd) answers EBUSY at once",
    },
    Known {
        kernel: "6.1.",
        id: "E24",
        kernel_lines: &[
            "O1 <- bast(CW) id=1 ast=ba01/b001 lksb=5b01 st=0 fl=0 nolvb",
            "!! spec: O1: expected Nothing",
        ],
        spec_mismatch: true,
        reason: "6.1 suppresses a repeated bast only against callbacks still \
                 queued; once the first bast(CW) was read, the second is sent",
    },
    Known {
        kernel: "6.1.",
        id: "E29",
        kernel_lines: &[
            "O2 <- cast(0,0) id=2 ast=ca02/c002 lksb=5b02 nolvb",
            "!! spec: O2: expected Cast(-11, 0)",
            // "abc\0" granted holds id 2, so "abd" gets 3 (the trace
            // is one line longer from here on)
            "O2 LOCK \"abd\" EX NOQUEUE -> 3",
            "O2 <- cast(0,0) id=3 ast=ca02/c002 lksb=5b02 nolvb",
        ],
        spec_mismatch: true,
        reason: "6.1 compares resource names at their exact length (spec E29)",
    },
    Known {
        kernel: "6.1.",
        id: "X1",
        kernel_lines: &[
            "O2 <- bast(EX) id=2 ast=ba02/b002 lksb=5b02 st=0 fl=4 nolvb",
            "!! spec: bast status, flags: got (0, 4), expected (0, 0)",
        ],
        spec_mismatch: true,
        reason: "6.1 puts the last cast's status and flags (here ALTMODE) in a bast result (spec X.2)",
    },
    Known {
        kernel: "6.1.",
        id: "X2",
        kernel_lines: &[
            "O1 LOCK \"b\" NL 0 -> 2",
            "!! spec: id after an unread unlock: got 2, expected 1",
            "O1 <- cast(-65538,0) id=1 ast=ca01/c001 lksb=5b01 nolvb",
            "O1 <- cast(0,0) id=2 ast=ca01/c001 lksb=5b01 nolvb",
        ],
        spec_mismatch: true,
        reason: "6.1 keeps a lock id reserved until its final cast is read (spec X.2)",
    },
    Known {
        kernel: "6.1.",
        id: "X3",
        kernel_lines: &[
            "O1 <- cast(0,0) id=2 ast=ca01/c001 lksb=5b01 lvb=\"Z\"",
            "!! spec: O1: expected CastLvb(0, 0, Some([65, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))",
            "O1 <- cast(0,0) id=2 ast=ca01/c001 lksb=5b01 lvb=\"Z\"",
        ],
        spec_mismatch: true,
        reason: "6.1 reads a cast's LVB at read() time, not when the cast was queued (spec X.2)",
    },
    Known {
        kernel: "6.1.",
        id: "X4",
        kernel_lines: &[
            "O1 <- cast(-65538,0) id=1 ast=ca01/c001 lksb=5b01 nolvb",
            "!! spec: O1: expected Cast(0, 0)",
            "!! spec: O1: expected lock id 2, got 1",
            "O1 <- cast(0,0) id=2 ast=ca01/c001 lksb=5b01 nolvb",
            "!! spec: O1: expected Cast(-65538, 0)",
            "!! spec: O1: expected lock id 1, got 2",
        ],
        spec_mismatch: true,
        reason: "6.1 delivers all pending callbacks of one lock before the next lock's (spec X.2)",
    },
];

/// Scenarios where the engine departs from the spec on purpose
/// (README's table of deliberate differences), with the reason.
pub const ENGINE_DELIBERATE: &[(&str, &str)] = &[(
    "C9",
    "README's table: a REMOVE while another opener is open answers EBUSY at once \
     where the kernel blocks until the opener closes",
)];

/// Scenarios where dlmd's trace differs from the engine's, with the reason
/// (docs/kernel-differences.md, \"dlmd\").
pub const DLMD: &[(&str, &str)] = &[(
    "C7",
    "dlmd sends callbacks to the client's socket as they are queued, so a \
     PURGE of the caller's own locks cannot withdraw a blocking callback \
     already sent; the kernel discards it",
)];

/// The known difference of scenario `id` on kernel release `release`.
pub fn lookup(release: &str, id: &str) -> Option<&'static Known> {
    KNOWN
        .iter()
        .find(|k| k.id == id && release.starts_with(k.kernel))
}
