//! A small client of the Rust API for multi-process tests. Each role is a
//! subcommand; the lock manager is the one `DLMD_SOCKET`/`DLM_BACKEND`
//! point at. It prints one line per event, so tests can follow it.
//!
//! ```text
//! dlm-test-client counter LS RESOURCE ROUNDS   increment the u64 in the LVB under EX
//! dlm-test-client hold LS RESOURCE MODE [persistent|keep|bast]
//!                                              lock, print "locked", wait for stdin EOF
//!                                              (bast: asking for blocking callbacks)
//! dlm-test-client open LS                      open, print "ok" or the errno number
//! dlm-test-client churn LS RESOURCE            lock/unlock until an error; print it
//! dlm-test-client bench LS PAIRS               create LS, PAIRS EX lock+unlock pairs,
//!                                              print "pair_ns X" (as tests/vm/kclib.c)
//! dlm-test-client cycle LS HELD WANTED         one handle: EX on HELD, print "locked",
//!                                              then on a stdin line EX on WANTED
//! dlm-test-client convert LS RESOURCE          PR, print "locked", then on a stdin
//!                                              line convert to EX (NODLCKWT)
//! ```

use dlm_core::{Error, LockOptions, Lockspace, Mode};
use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let result = match arg(0) {
        "counter" => counter(arg(1), arg(2), arg(3).parse().unwrap_or(1)),
        "hold" => hold(arg(1), arg(2), arg(3), arg(4)),
        "open" => {
            match Lockspace::open(arg(1)) {
                Ok(_) => println!("ok"),
                Err(e) => println!("{}", e.errno().raw()),
            }
            Ok(())
        }
        "cycle" => cycle(arg(1), arg(2), arg(3)),
        "convert" => convert(arg(1), arg(2)),
        "churn" => churn(arg(1), arg(2)),
        "bench" => bench(arg(1), arg(2).parse().unwrap_or(1000)),
        other => {
            eprintln!("unknown role {other:?}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dlm-test-client: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The pairs of `kclib bench` through the safe Rust API, for
/// tests/tests/kernel_speed.rs.
fn bench(ls: &str, pairs: u32) -> Result<(), Error> {
    let space = Lockspace::create(ls, 0o600)?;
    let t0 = std::time::Instant::now();
    for _ in 0..pairs {
        space
            .lock(b"bench", Mode::Ex, LockOptions::new())?
            .unlock()?;
    }
    println!(
        "pair_ns {:.0}",
        t0.elapsed().as_nanos() as f64 / f64::from(pairs.max(1))
    );
    space.release(false)
}

fn counter(ls: &str, res: &str, rounds: u32) -> Result<(), Error> {
    let ls = Lockspace::open(ls)?;
    for _ in 0..rounds {
        let mut lock = ls.lock(res.as_bytes(), Mode::Ex, LockOptions::new().lvb())?;
        let value = u64::from_ne_bytes(lock.lvb()[..8].try_into().unwrap()) + 1;
        lock.lvb_mut()[..8].copy_from_slice(&value.to_ne_bytes());
        lock.unlock()?;
    }
    Ok(())
}

fn hold(ls: &str, res: &str, mode: &str, how: &str) -> Result<(), Error> {
    let ls = Lockspace::open(ls)?;
    let mode: Mode = mode.parse().map_err(Error::Sys)?;
    let opts = match how {
        "persistent" => LockOptions::new().persistent(),
        "bast" => LockOptions::new().on_blocking(|_| {}),
        _ => LockOptions::new(),
    };
    let lock = ls.lock(res.as_bytes(), mode, opts)?;
    println!("locked {}", lock.id());
    if how == "persistent" {
        // Exit holding it: it becomes an orphan.
        lock.keep();
        return Ok(());
    }
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(lock);
    Ok(())
}

fn churn(ls: &str, res: &str) -> Result<(), Error> {
    let ls = Lockspace::open(ls)?;
    println!("started");
    loop {
        match ls.lock(res.as_bytes(), Mode::Ex, LockOptions::new()) {
            Ok(lock) => {
                if let Err(e) = lock.unlock() {
                    println!("{}", e.errno().raw());
                    return Ok(());
                }
            }
            Err(e) => {
                println!("{}", e.errno().raw());
                return Ok(());
            }
        }
    }
}

/// Waits for a line on stdin (or its end).
fn go() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

fn cycle(ls: &str, held: &str, wanted: &str) -> Result<(), Error> {
    let ls = Lockspace::open(ls)?;
    let a = ls.lock(held.as_bytes(), Mode::Ex, LockOptions::new())?;
    println!("locked {}", a.id());
    go();
    let b = ls.lock(wanted.as_bytes(), Mode::Ex, LockOptions::new())?;
    println!("locked {}", b.id());
    Ok(())
}

fn convert(ls: &str, res: &str) -> Result<(), Error> {
    let ls = Lockspace::open(ls)?;
    let mut a = ls.lock(res.as_bytes(), Mode::Pr, LockOptions::new())?;
    println!("locked {}", a.id());
    go();
    a.convert_flags(Mode::Ex, dlm_core::LockFlags::NODLCKWT)?;
    println!("converted");
    Ok(())
}
