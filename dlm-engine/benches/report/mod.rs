//! The figures of a benchmark program: readable lines, and with
//! `DLM_BENCH_JSON` set (as `cargo xtask bench --json` does) one machine
//! line per figure on stdout, the readable lines then going to stderr:
//!
//! - `@ratio KEY MEDIAN MIN MAX`: a ratio over interleaved rounds;
//! - `@size KEY VALUE`: a plain number (bytes per lock and the like).
//!
//! `cargo xtask bench --json` gathers these lines into one JSON object.
//! Shared by the benchmarks of several crates (included by path).

#![allow(dead_code)]

use std::fmt;

/// Median, minimum and maximum of the ratios of several rounds.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// The statistics of `v` (not empty).
    pub fn of(v: &[f64]) -> Stats {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        Stats {
            median: median(&s),
            min: s[0],
            max: s[s.len() - 1],
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.3} (min {:.3}, max {:.3})",
            self.median, self.min, self.max
        )
    }
}

/// The median of `v` (not empty): the middle value, or the mean of the
/// two middle values.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Where the figures go.
pub struct Report {
    machine: bool,
}

impl Report {
    /// Machine lines when `DLM_BENCH_JSON` is set.
    pub fn from_env() -> Report {
        Report {
            machine: std::env::var_os("DLM_BENCH_JSON").is_some_and(|v| !v.is_empty()),
        }
    }

    /// Runs `n` rounds of `f`, each measuring both sides one after the
    /// other and returning their ratio.
    pub fn rounds(&self, n: usize, mut f: impl FnMut() -> f64) -> Stats {
        let v: Vec<f64> = (0..n.max(1)).map(|_| f()).collect();
        Stats::of(&v)
    }

    /// A readable line (stdout, or stderr in machine mode).
    pub fn line(&self, text: impl AsRef<str>) {
        if self.machine {
            eprintln!("{}", text.as_ref());
        } else {
            println!("{}", text.as_ref());
        }
    }

    /// A ratio figure.
    pub fn ratio(&self, key: &str, s: Stats, text: impl AsRef<str>) {
        self.line(text);
        if self.machine && [s.median, s.min, s.max].iter().all(|x| x.is_finite()) {
            println!("@ratio {key} {:.4} {:.4} {:.4}", s.median, s.min, s.max);
        }
    }

    /// A plain-number figure.
    pub fn size(&self, key: &str, v: f64, text: impl AsRef<str>) {
        self.line(text);
        if self.machine && v.is_finite() {
            println!("@size {key} {v}");
        }
    }

    /// Flushes stdout.
    pub fn finish(self) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
}
