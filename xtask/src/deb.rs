//! `cargo xtask deb [--from DIR] [--out DIR]`: Debian packages.
//!
//! Builds the release binaries (or, with `--from`, takes `libdlm.so`,
//! `libdlm_lt.so`, `dlmd` and `dlm` already built in DIR) and writes,
//! with `dpkg-deb`, under `--out` (default `target/debian`):
//!
//! - `libdlm3-rs`: `libdlm.so.3` and `libdlm_lt.so.3`, in place of
//!   Debian's `libdlm3` (Provides `libdlm3 (= 4.2.0)`, Conflicts and
//!   Replaces it);
//! - `libdlm-rs-dev`: `libdlm.h`, the `.so` links, the `.pc` files and
//!   the section 3 pages, in place of `libdlm-dev`;
//! - `dlmd`: the daemon, its systemd unit, the `dlm` tool, their pages and
//!   the bash, zsh and fish completions;
//! - `libdlm3-rs-dbgsym`, `dlmd-dbgsym`: the debug information split off
//!   the installed (stripped) binaries, as
//!   `/usr/lib/debug/.build-id/xx/yyyy.debug`.
//!
//! The library layout is `cargo xtask release`'s, staged for `/usr` with
//! Debian's multiarch library directory. `Depends` comes from
//! `dpkg-shlibdeps` on the stripped binaries. No maintainer scripts: the
//! libraries activate dpkg's `ldconfig` trigger, and installing or
//! upgrading `dlmd` never starts, stops or restarts the daemon (a restart
//! drops every lock).

use crate::host::{self, Need};
use crate::release::{self, io, symlink};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What building the packages needs on the host.
pub const NEEDS: &[Need] = &[
    Need::program("dpkg-deb", "dpkg"),
    Need::program("dpkg-shlibdeps", "dpkg-dev"),
    Need::program("dpkg-architecture", "dpkg-dev"),
    Need::program("objcopy", "binutils"),
    Need::program("strip", "binutils"),
    Need::program("readelf", "binutils"),
    Need::program("nm", "binutils"),
    Need::program("gzip", "gzip"),
];

/// The Debian revision appended to the crate version.
const REVISION: &str = "1";
const MAINTAINER: &str = "dlm-rs developers <dlm-rs@example.invalid>";
const LIB: &str = "libdlm3-rs";
const DEV: &str = "libdlm-rs-dev";
const DAEMON: &str = "dlmd";

/// One binary package being assembled.
struct Pkg {
    name: &'static str,
    /// The staging directory (the package's root).
    dir: PathBuf,
    /// Control fields after Package/Version/Architecture/Maintainer.
    fields: Vec<(&'static str, String)>,
    /// Its ELF files, relative to `dir`, to strip and to compute
    /// `Depends` from.
    elves: Vec<PathBuf>,
}

impl Pkg {
    fn new(stage: &Path, name: &'static str) -> Result<Pkg, String> {
        let dir = stage.join(name);
        io(&dir, std::fs::create_dir_all(&dir))?;
        Ok(Pkg {
            name,
            dir,
            fields: Vec::new(),
            elves: Vec::new(),
        })
    }

    fn field(&mut self, name: &'static str, value: impl Into<String>) {
        self.fields.push((name, value.into()));
    }

    /// `dir/rel`, with its parent directories created.
    fn path(&self, rel: &str) -> Result<PathBuf, String> {
        let path = self.dir.join(rel.trim_start_matches('/'));
        let parent = path.parent().expect("a path below the package root");
        io(parent, std::fs::create_dir_all(parent))?;
        Ok(path)
    }

    fn copy(&self, from: &Path, rel: &str) -> Result<PathBuf, String> {
        let to = self.path(rel)?;
        let _ = std::fs::remove_file(&to);
        io(from, std::fs::copy(from, &to))?;
        Ok(to)
    }

    /// A file compressed with `gzip -9n` (no name, no time stamp).
    fn gzip(&self, from: &Path, rel: &str) -> Result<(), String> {
        let to = self.path(rel)?;
        let out = Command::new("gzip")
            .args(["-9n", "-c"])
            .arg(from)
            .output()
            .map_err(|e| format!("gzip: {e}"))?;
        if !out.status.success() {
            return Err(format!("gzip {}: {}", from.display(), out.status));
        }
        io(&to, std::fs::write(&to, out.stdout))
    }

    fn write(&self, rel: &str, text: &str) -> Result<(), String> {
        let to = self.path(rel)?;
        io(&to, std::fs::write(&to, text))
    }

    fn link(&self, target: &str, rel: &str) -> Result<(), String> {
        symlink(target, &self.path(rel)?)
    }
}

/// Runs the subcommand.
pub fn run(args: &[String]) -> Result<(), String> {
    let root = crate::workspace_root();
    let mut out = root.join("target/debian");
    let mut from = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out" => out = PathBuf::from(it.next().ok_or("--out needs a directory")?),
            "--from" => from = Some(PathBuf::from(it.next().ok_or("--from needs a directory")?)),
            other => return Err(format!("deb: unknown argument {other:?}")),
        }
    }
    host::ensure(NEEDS)?;
    let built = match from {
        Some(dir) => release::absolute(&dir)?,
        None => release::build_packages(&root, &["dlm-pthread", "dlm-lt", "dlmd", "dlm-cli"])?,
    };
    let out = release::absolute(&out)?;
    let debs = build(&root, &built, &out)?;
    for deb in debs {
        println!("{}", deb.display());
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("{cmd:?}: output is not UTF-8"))
}

/// Builds every package from the binaries in `built`; returns the `.deb`
/// files written to `out`.
pub fn build(root: &Path, built: &Path, out: &Path) -> Result<Vec<PathBuf>, String> {
    let version = format!("{}-{REVISION}", env!("CARGO_PKG_VERSION"));
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();
    let multiarch = output(Command::new("dpkg-architecture").arg("-qDEB_HOST_MULTIARCH"))?
        .trim()
        .to_string();
    let stage = out.join("stage");
    let _ = std::fs::remove_dir_all(&stage);
    io(out, std::fs::create_dir_all(out))?;
    // Old packages of this version would be mixed with the new ones.
    for entry in io(out, std::fs::read_dir(out))? {
        let path = io(out, entry)?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            io(&path, std::fs::remove_file(&path))?;
        }
    }

    // The C libraries, exactly as `cargo xtask release` lays them out.
    let tree = stage.join("tree");
    let libdir = format!("lib/{multiarch}");
    release::install_into(root, built, &tree, Path::new("/usr"), &libdir)?;
    let generated = crate::man::generate(&stage.join("man"))?;
    let manual = root.join("man");

    let mut lib = Pkg::new(&stage, LIB)?;
    let mut dev = Pkg::new(&stage, DEV)?;
    let mut daemon = Pkg::new(&stage, DAEMON)?;

    for stem in ["libdlm", "libdlm_lt"] {
        let real = format!("usr/{libdir}/{stem}.so.3.0");
        lib.copy(&tree.join(&real), &real)?;
        lib.elves.push(real.into());
        lib.link(
            &format!("{stem}.so.3.0"),
            &format!("usr/{libdir}/{stem}.so.3"),
        )?;
        dev.link(&format!("{stem}.so.3"), &format!("usr/{libdir}/{stem}.so"))?;
        let pc = format!("usr/{libdir}/pkgconfig/{stem}.pc");
        dev.copy(&tree.join(&pc), &pc)?;
    }
    dev.copy(&tree.join("usr/include/libdlm.h"), "usr/include/libdlm.h")?;
    for (page, aliases) in crate::man::PAGES {
        let section = page.rsplit('.').next().expect("a page has a section");
        let pkg = if section == "3" { &dev } else { &daemon };
        pkg.gzip(
            &manual.join(page),
            &format!("usr/share/man/man{section}/{page}.gz"),
        )?;
        for alias in *aliases {
            pkg.link(
                &format!("{page}.gz"),
                &format!("usr/share/man/man{section}/{alias}.gz"),
            )?;
        }
    }

    // dlmd in /usr/bin, not /usr/sbin: any user may run one for
    // themselves, and `dlm daemon` starts the dlmd beside it (a user's
    // PATH has no sbin directory on Debian).
    daemon.copy(&built.join("dlmd"), "usr/bin/dlmd")?;
    daemon.copy(&built.join("dlm"), "usr/bin/dlm")?;
    daemon.elves = vec!["usr/bin/dlmd".into(), "usr/bin/dlm".into()];
    for unit in ["dlmd.service", "dlmd.socket"] {
        daemon.copy(
            &root.join("contrib").join(unit),
            &format!("usr/lib/systemd/system/{unit}"),
        )?;
    }
    for page in &generated.man1 {
        let name = page.file_name().expect("a page").to_string_lossy();
        daemon.gzip(page, &format!("usr/share/man/man1/{name}.gz"))?;
    }
    daemon.gzip(&generated.man8, "usr/share/man/man8/dlmd.8.gz")?;
    let [bash, zsh, fish] = &generated.dlmd_completions;
    daemon.copy(bash, "usr/share/bash-completion/completions/dlmd")?;
    daemon.copy(zsh, "usr/share/zsh/vendor-completions/_dlmd")?;
    daemon.copy(fish, "usr/share/fish/vendor_completions.d/dlmd.fish")?;
    daemon.copy(&generated.bash, "usr/share/bash-completion/completions/dlm")?;
    daemon.copy(&generated.zsh, "usr/share/zsh/vendor-completions/_dlm")?;
    daemon.copy(
        &generated.fish,
        "usr/share/fish/vendor_completions.d/dlm.fish",
    )?;
    daemon.copy(
        &root.join("packaging/debian/README.Debian"),
        "usr/share/doc/dlmd/README.Debian",
    )?;

    // Control fields.
    let api = release::API_VERSION;
    lib.field("Section", "libs");
    lib.field("Priority", "optional");
    lib.field("Multi-Arch", "same");
    lib.field("Provides", format!("libdlm3 (= {api})"));
    lib.field("Conflicts", "libdlm3");
    lib.field("Replaces", "libdlm3");
    lib.field(
        "Description",
        "Linux Distributed Lock Manager library (dlm-rs)\n\
         libdlm.so.3 (with a thread for callbacks) and libdlm_lt.so.3\n\
         (without), the userspace library of the Linux Distributed Lock\n\
         Manager, written in Rust. They have the symbols, structure layouts\n\
         and error conventions of libdlm 4.2.0, so programs built against\n\
         libdlm3 run unmodified.\n\
         .\n\
         Locks go to the kernel DLM where the kernel has it, else to dlmd,\n\
         the single-machine lock manager of the dlmd package.",
    );
    dev.field("Section", "libdevel");
    dev.field("Priority", "optional");
    dev.field("Multi-Arch", "same");
    dev.field("Provides", format!("libdlm-dev (= {api})"));
    dev.field("Conflicts", "libdlm-dev");
    dev.field("Replaces", "libdlm-dev");
    dev.field("Depends", format!("{LIB} (= {version})"));
    dev.field(
        "Description",
        "Linux Distributed Lock Manager library (dlm-rs) - development files\n\
         The header libdlm.h, the pkg-config files libdlm.pc and\n\
         libdlm_lt.pc, the links to link against libdlm and libdlm_lt,\n\
         and the manual pages of the library's functions.",
    );
    daemon.field("Section", "admin");
    daemon.field("Priority", "optional");
    daemon.field(
        "Description",
        "userspace Distributed Lock Manager for one machine, and the dlm tool\n\
         dlmd serves the lock manager of the Linux DLM (the kernel's\n\
         semantics: six modes, conversions, lock value blocks, blocking\n\
         callbacks, orphans) to the processes of one machine over a Unix\n\
         socket, where the kernel has no DLM configured. Programs using\n\
         libdlm find it without changes.\n\
         .\n\
         dlm, a cluster-wide flock(1) for the shell, also creates and\n\
         releases lockspaces and shows the lock dump of dlmd or the kernel.",
    );

    let changelog = changelog(&version)?;
    let copyright = root.join("packaging/debian/copyright");
    let mut debs = Vec::new();
    let mut report = String::new();
    for mut pkg in [lib, dev, daemon] {
        let dbg = split_debug(&mut pkg, &stage, &mut report)?;
        let depends = shlib_depends(&stage, &pkg)?;
        if !depends.is_empty() {
            let existing = pkg
                .fields
                .iter()
                .position(|(f, _)| *f == "Depends")
                .map(|i| pkg.fields.remove(i).1);
            let all = existing.into_iter().chain([depends]).collect::<Vec<_>>();
            pkg.field("Depends", all.join(", "));
        }
        docs(&pkg, &copyright, &changelog)?;
        let overrides = root.join(format!("packaging/debian/lintian/{}", pkg.name));
        if overrides.exists() {
            pkg.copy(
                &overrides,
                &format!("usr/share/lintian/overrides/{}", pkg.name),
            )?;
        }
        if pkg.name == LIB {
            // dpkg runs ldconfig through libc-bin's trigger; no scripts.
            pkg.write("DEBIAN/triggers", "activate-noawait ldconfig\n")?;
            pkg.write(
                "DEBIAN/shlibs",
                &format!("libdlm 3 libdlm3 (>= {api})\nlibdlm_lt 3 libdlm3 (>= {api})\n"),
            )?;
            pkg.write("DEBIAN/symbols", &symbols(&pkg)?)?;
        }
        debs.push(dpkg_deb(&pkg, &version, &arch, out)?);
        if let Some(dbg) = dbg {
            debs.push(dpkg_deb(&dbg, &version, &arch, out)?);
        }
    }
    let sizes = out.join("SIZES.txt");
    io(&sizes, std::fs::write(&sizes, &report))?;
    print!("{report}");
    let _ = std::fs::remove_dir_all(&stage);
    Ok(debs)
}

/// Strips the package's ELF files, moving their debug information into
/// a `-dbgsym` package; adds the sizes to `report`.
fn split_debug(pkg: &mut Pkg, stage: &Path, report: &mut String) -> Result<Option<Pkg>, String> {
    if pkg.elves.is_empty() {
        return Ok(None);
    }
    let name: &'static str = Box::leak(format!("{}-dbgsym", pkg.name).into_boxed_str());
    let mut dbg = Pkg::new(stage, name)?;
    let mut ids = Vec::new();
    for rel in &pkg.elves {
        let file = pkg.dir.join(rel);
        let before = io(&file, std::fs::metadata(&file))?.len();
        let notes = output(Command::new("readelf").arg("-n").arg(&file))?;
        let id = notes
            .lines()
            .find_map(|l| l.trim().strip_prefix("Build ID: "))
            .ok_or_else(|| format!("{}: no GNU build id", file.display()))?
            .to_string();
        let (dir, rest) = id.split_at(2);
        let debug = dbg.path(&format!("usr/lib/debug/.build-id/{dir}/{rest}.debug"))?;
        // The crate breakdown comes from the symbols before stripping.
        let crates = crate_sizes(&file)?;
        host::run(
            Command::new("objcopy")
                .args(["--only-keep-debug", "--compress-debug-sections"])
                .arg(&file)
                .arg(&debug),
        )?;
        let shared = rel.to_string_lossy().contains(".so");
        let mut strip = Command::new("strip");
        strip.args(["--remove-section=.comment", "--remove-section=.note"]);
        if shared {
            strip.arg("--strip-unneeded");
        }
        host::run(strip.arg(&file))?;
        host::run(
            Command::new("objcopy")
                .arg(format!("--add-gnu-debuglink={}", debug.display()))
                .arg(&file),
        )?;
        let after = io(&file, std::fs::metadata(&file))?.len();
        let dbg_size = io(&debug, std::fs::metadata(&debug))?.len();
        let _ = writeln!(
            report,
            "{}: /{}: {} bytes installed (stripped; {} before), debug information {} bytes",
            pkg.name,
            rel.display(),
            after,
            before,
            dbg_size
        );
        let _ = writeln!(report, "  code and data by crate: {crates}");
        ids.push(id);
    }
    let version_dep = format!("{} (= {})", pkg.name, "${version}");
    dbg.field("Auto-Built-Package", "debug-symbols");
    dbg.field("Section", "debug");
    dbg.field("Priority", "optional");
    if pkg
        .fields
        .iter()
        .any(|(f, v)| *f == "Multi-Arch" && v == "same")
    {
        dbg.field("Multi-Arch", "same");
    }
    dbg.field("Depends", version_dep);
    dbg.field("Description", format!("debug symbols for {}", pkg.name));
    dbg.field("Build-Ids", ids.join(" "));
    dbg.link(pkg.name, &format!("usr/share/doc/{name}"))?;
    Ok(Some(dbg))
}

/// The sizes of a binary's symbols (code and data), summed by the crate
/// (or C library) they come from, largest first.
fn crate_sizes(file: &Path) -> Result<String, String> {
    let symbols = output(
        Command::new("nm")
            .args(["-S", "-C", "--size-sort"])
            .arg(file),
    )?;
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0;
    for line in symbols.lines() {
        let mut parts = line.splitn(4, ' ');
        let (Some(_addr), Some(size), Some(_kind), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Ok(size) = u64::from_str_radix(size, 16) else {
            continue;
        };
        total += size;
        *by.entry(owner(name)).or_default() += size;
    }
    let mut by: Vec<_> = by.into_iter().collect();
    by.sort_by_key(|b| std::cmp::Reverse(b.1));
    let mut text = format!("{} KiB in symbols;", total / 1024);
    for (name, size) in by.iter().take(8) {
        let _ = write!(text, " {name} {} KiB,", size / 1024);
    }
    text.pop();
    Ok(text)
}

/// The crate a demangled symbol belongs to: the first path segment of its
/// name (inside `<...>` for trait impls); C symbols count by prefix.
fn owner(name: &str) -> String {
    let name = name.trim_start_matches('<').trim_start_matches('&');
    let name = name.trim_start_matches("mut ").trim_start_matches("dyn ");
    match name.find("::") {
        Some(i) if !name[..i].contains(['<', ' ', '(']) => name[..i].to_string(),
        _ if name.starts_with("dlm_") || name.ends_with("_resource") => "libdlm API".into(),
        _ => "other (C, linker)".into(),
    }
}

/// The `symbols` control file of the library package: every exported
/// function of each library, at libdlm's API level (programs linked
/// against them then depend on `libdlm3 (>= 4.2.0)`, which this package
/// provides and Debian's satisfies).
fn symbols(pkg: &Pkg) -> Result<String, String> {
    let mut text = String::new();
    for elf in &pkg.elves {
        let file = pkg.dir.join(elf);
        let name = file.file_name().expect("a file").to_string_lossy();
        let soname = name.trim_end_matches(".0");
        let _ = writeln!(text, "{soname} libdlm3 #MINVER#");
        let _ = writeln!(text, "* Build-Depends-Package: libdlm-dev");
        let nm = output(Command::new("nm").args(["-D", "--defined-only"]).arg(&file))?;
        let mut names: Vec<&str> = nm
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("T"))
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect();
        names.sort_unstable();
        for sym in names {
            let _ = writeln!(text, " {sym}@Base {}", release::API_VERSION);
        }
    }
    Ok(text)
}

/// `Depends` of the package's ELF files, from `dpkg-shlibdeps`.
fn shlib_depends(stage: &Path, pkg: &Pkg) -> Result<String, String> {
    if pkg.elves.is_empty() {
        return Ok(String::new());
    }
    // dpkg-shlibdeps reads debian/control of a source tree.
    let src = stage.join("shlibdeps");
    let control = src.join("debian/control");
    io(
        &src,
        std::fs::create_dir_all(control.parent().expect("a parent")),
    )?;
    io(
        &control,
        std::fs::write(
            &control,
            format!(
                "Source: dlm-rs\n\nPackage: {}\nArchitecture: any\n",
                pkg.name
            ),
        ),
    )?;
    let mut cmd = Command::new("dpkg-shlibdeps");
    cmd.current_dir(&src)
        .arg("-O")
        .arg(format!("-p{}", pkg.name));
    for elf in &pkg.elves {
        cmd.arg(format!("-e{}", pkg.dir.join(elf).display()));
    }
    let text = output(&mut cmd)?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{}:Depends=", pkg.name)))
        .unwrap_or("")
        .to_string())
}

/// The time the packages are dated by: `SOURCE_DATE_EPOCH`, else the
/// last commit's, else now (seconds since 1970), so that two builds of a
/// commit give the same packages.
fn source_date_epoch() -> String {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|e| !e.is_empty())
        .or_else(|| {
            output(
                Command::new("git")
                    .current_dir(crate::workspace_root())
                    .args(["log", "-1", "--format=%ct"]),
            )
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.map_or(0, |d| d.as_secs()).to_string()
        })
}

/// The Debian changelog of this build, dated by [`source_date_epoch`].
fn changelog(version: &str) -> Result<String, String> {
    let epoch = source_date_epoch();
    let date = output(Command::new("date").args(["-R", "-u", "-d", &format!("@{epoch}")]))?;
    Ok(format!(
        "dlm-rs ({version}) unstable; urgency=medium\n\n  \
         * Built by `cargo xtask deb` from the dlm-rs workspace.\n\n \
         -- {MAINTAINER}  {}\n",
        date.trim()
    ))
}

/// `/usr/share/doc/PKG/copyright` and `changelog.Debian.gz`.
fn docs(pkg: &Pkg, copyright: &Path, changelog: &str) -> Result<(), String> {
    let doc = format!("usr/share/doc/{}", pkg.name);
    pkg.copy(copyright, &format!("{doc}/copyright"))?;
    let plain = pkg.dir.join("changelog.tmp");
    io(&plain, std::fs::write(&plain, changelog))?;
    pkg.gzip(&plain, &format!("{doc}/changelog.Debian.gz"))?;
    io(&plain, std::fs::remove_file(&plain))
}

/// Every file below `dir` (not symlinks, not directories), sorted.
fn files(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut entries: Vec<_> = io(dir, std::fs::read_dir(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    entries.sort();
    for path in entries {
        let meta = io(&path, std::fs::symlink_metadata(&path))?;
        if meta.is_dir() {
            if path != base.join("DEBIAN") {
                files(&path, base, out)?;
            }
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// Sets Debian's permissions (0755 directories and programs, 0644 for
/// the rest), writes `DEBIAN/control` and `DEBIAN/md5sums`, and builds
/// the `.deb`.
fn dpkg_deb(pkg: &Pkg, version: &str, arch: &str, out: &Path) -> Result<PathBuf, String> {
    let mut all = Vec::new();
    files(&pkg.dir, &pkg.dir, &mut all)?;
    let mut md5sums = String::new();
    let mut kib = 0;
    for file in &all {
        let rel = file
            .strip_prefix(&pkg.dir)
            .expect("below the package root")
            .to_string_lossy()
            .into_owned();
        let program = rel.starts_with("usr/bin/");
        let mode = if program { 0o755 } else { 0o644 };
        io(
            file,
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode)),
        )?;
        let sum = output(Command::new("md5sum").arg(file))?;
        let sum = sum.split_whitespace().next().unwrap_or_default();
        let _ = writeln!(md5sums, "{sum}  {rel}");
        kib += io(file, std::fs::metadata(file))?.len().div_ceil(1024);
    }
    set_dir_modes(&pkg.dir)?;
    let mut control = format!(
        "Package: {}\nSource: dlm-rs\nVersion: {version}\nArchitecture: {arch}\n\
         Maintainer: {MAINTAINER}\nInstalled-Size: {}\n",
        pkg.name,
        kib.max(1)
    );
    for (name, value) in &pkg.fields {
        let value = value.replace("${version}", version);
        let mut lines = value.lines();
        let _ = writeln!(control, "{name}: {}", lines.next().unwrap_or_default());
        for line in lines {
            let _ = writeln!(control, " {line}");
        }
    }
    pkg.write("DEBIAN/control", &control)?;
    pkg.write("DEBIAN/md5sums", &md5sums)?;
    for f in ["control", "md5sums", "triggers", "shlibs", "symbols"] {
        let path = pkg.dir.join("DEBIAN").join(f);
        if path.exists() {
            io(
                &path,
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)),
            )?;
        }
    }
    let deb = out.join(format!("{}_{version}_{arch}.deb", pkg.name));
    host::run(
        Command::new("dpkg-deb")
            // dpkg-deb clamps file times to it and dates the archive by it.
            .env("SOURCE_DATE_EPOCH", source_date_epoch())
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&pkg.dir)
            .arg(&deb)
            .stdout(std::process::Stdio::null()),
    )?;
    Ok(deb)
}

fn set_dir_modes(dir: &Path) -> Result<(), String> {
    io(
        dir,
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)),
    )?;
    for entry in io(dir, std::fs::read_dir(dir))? {
        let path = io(dir, entry)?.path();
        if io(&path, std::fs::symlink_metadata(&path))?.is_dir() {
            set_dir_modes(&path)?;
        }
    }
    Ok(())
}
