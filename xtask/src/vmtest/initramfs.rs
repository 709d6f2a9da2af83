//! The guest's initramfs: a file tree (`Initramfs`) in Debian 12's
//! merged-/usr layout, filled with host files, package files and
//! generated ones; dynamic ELF programs bring the shared libraries `ldd`
//! finds for them. Written as an uncompressed newc cpio archive (what the
//! kernel unpacks), which boots fastest under TCG.

use super::{MULTIARCH, Result, walk};
use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

enum Entry {
    Dir,
    File { src: Src, mode: u32 },
    Symlink(String),
}

enum Src {
    Host(PathBuf),
    Bytes(Vec<u8>),
}

/// Maps a path to Debian 12's merged-/usr layout (/lib -> usr/lib, ...), so
/// that host paths from `ldd` and package paths land in one tree.
fn usrmerge(p: &str) -> String {
    for top in ["/bin", "/sbin", "/lib", "/lib64"] {
        if p == top || p.starts_with(&format!("{top}/")) {
            return format!("/usr{p}");
        }
    }
    p.to_string()
}

pub(super) struct Initramfs {
    entries: BTreeMap<String, Entry>,
    /// Libraries from outside the loader's default paths (put in
    /// /vmtest/lib): file name -> host path.
    private_libs: BTreeMap<String, PathBuf>,
    /// Host libraries already resolved.
    done: HashSet<PathBuf>,
}

impl Initramfs {
    pub(super) fn new() -> Initramfs {
        let mut ir = Initramfs {
            entries: BTreeMap::new(),
            private_libs: BTreeMap::new(),
            done: HashSet::new(),
        };
        for top in ["bin", "sbin", "lib", "lib64"] {
            ir.dir(&format!("/usr/{top}"));
            ir.symlink(&format!("/{top}"), &format!("usr/{top}"));
        }
        for d in [
            "/dev", "/proc", "/sys", "/run", "/tmp", "/root", "/etc", "/var", "/mnt",
        ] {
            ir.dir(d);
        }
        ir.symlink("/var/run", "/run");
        ir
    }

    pub(super) fn dir(&mut self, p: &str) {
        let mut cur = String::new();
        for part in p.split('/').filter(|s| !s.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            self.entries.entry(cur.clone()).or_insert(Entry::Dir);
        }
    }

    fn parent(&mut self, p: &str) {
        if let Some((parent, _)) = p.rsplit_once('/') {
            if !parent.is_empty() {
                self.dir(parent);
            }
        }
    }

    fn symlink(&mut self, p: &str, target: &str) {
        self.parent(p);
        self.entries
            .insert(p.to_string(), Entry::Symlink(target.to_string()));
    }

    pub(super) fn bytes(&mut self, p: &str, data: impl Into<Vec<u8>>, mode: u32) {
        let p = usrmerge(p);
        self.parent(&p);
        self.entries.insert(
            p,
            Entry::File {
                src: Src::Bytes(data.into()),
                mode,
            },
        );
    }

    pub(super) fn host_file(&mut self, p: &str, host: &Path) -> Result<()> {
        let meta = fs::metadata(host).map_err(|e| format!("vmtest: {}: {e}", host.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let p = usrmerge(p);
        self.parent(&p);
        self.entries.insert(
            p,
            Entry::File {
                src: Src::Host(host.to_path_buf()),
                mode: meta.permissions().mode() & 0o7777,
            },
        );
        Ok(())
    }

    /// Adds a host file; if it is a dynamic ELF file, also the shared
    /// libraries `ldd` finds for it. Libraries found under one of
    /// `sysroots` (unpacked packages) go to the same path below /; host
    /// libraries keep their host path.
    pub(super) fn program(&mut self, guest: &str, host: &Path, sysroots: &[PathBuf]) -> Result<()> {
        self.host_file(guest, host)?;
        let mut head = [0u8; 4];
        let is_elf = fs::File::open(host)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && &head == b"\x7fELF";
        if !is_elf {
            return Ok(());
        }
        let mut ldpath: Vec<String> = Vec::new();
        for r in sysroots {
            for d in [
                format!("usr/lib/{MULTIARCH}"),
                format!("lib/{MULTIARCH}"),
                "usr/lib".into(),
            ] {
                let p = r.join(d);
                if p.is_dir() {
                    ldpath.push(p.to_string_lossy().into_owned());
                }
            }
        }
        // the host's LD_LIBRARY_PATH (e.g. our target/ directory) applies
        // to test programs, not to the packaged cluster stack
        if let Some(host_ld) = std::env::var("LD_LIBRARY_PATH")
            .ok()
            .filter(|_| sysroots.is_empty())
        {
            ldpath.extend(
                host_ld
                    .split(':')
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        let out = Command::new("ldd")
            .arg(host)
            .env("LD_LIBRARY_PATH", ldpath.join(":"))
            .output()
            .map_err(|e| format!("vmtest: ldd: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic executable") || text.contains("statically linked") {
            return Ok(());
        }
        if !out.status.success() {
            return Err(format!("vmtest: ldd {} failed:\n{text}", host.display()));
        }
        let mut missing = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.contains("=> not found") {
                missing.push(line.split_whitespace().next().unwrap_or("").to_string());
                continue;
            }
            let path = match line.split_once("=>") {
                Some((_, r)) => r.trim(),
                None => line,
            };
            let path = path.split(" (0x").next().unwrap_or("").trim();
            if !path.contains('/') {
                continue; // linux-vdso.so.1
            }
            // keep absolute paths as ldd prints them (the loader's path is
            // the PT_INTERP the guest needs); anchor relative ones
            let hp = std::env::current_dir()
                .map_err(|e| e.to_string())?
                .join(path);
            let path = &*hp.to_string_lossy().into_owned();
            if !self.done.insert(hp.clone()) {
                continue;
            }
            let standard = [
                format!("/usr/lib/{MULTIARCH}"),
                "/usr/lib".into(),
                "/usr/lib64".into(),
            ];
            let host_dir = usrmerge(path.rsplit_once('/').map_or("/", |x| x.0));
            let gp = match sysroots.iter().find_map(|r| hp.strip_prefix(r).ok()) {
                Some(rel) => format!("/{}", rel.display()),
                None if standard.contains(&host_dir) => path.to_string(),
                None => {
                    // Elsewhere (a build tree, LD_LIBRARY_PATH): the host
                    // path may be hidden by a guest mount (/tmp), so these
                    // all go to /vmtest/lib, which is on LD_LIBRARY_PATH.
                    let base = hp
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned();
                    if let Some(other) = self.private_libs.insert(base.clone(), hp.clone()) {
                        if other != hp {
                            return Err(format!(
                                "vmtest: two libraries named {base}: {} and {}",
                                other.display(),
                                hp.display()
                            ));
                        }
                    }
                    format!("/vmtest/lib/{base}")
                }
            };
            self.host_file(&gp, &hp)?;
        }
        if !missing.is_empty() {
            return Err(format!(
                "vmtest: {} needs {} which ldd cannot find on the host (set LD_LIBRARY_PATH?)",
                host.display(),
                missing.join(", ")
            ));
        }
        Ok(())
    }

    /// Whether some library lives in /vmtest/lib (which then goes on the
    /// guest's `LD_LIBRARY_PATH`).
    pub(super) fn has_private_libs(&self) -> bool {
        !self.private_libs.is_empty()
    }

    /// Copies a host directory tree to `guest` (ELF files with their libraries).
    pub(super) fn tree(&mut self, guest: &str, host: &Path) -> Result<()> {
        let mut files = Vec::new();
        walk(host, &mut |p| files.push(p.to_path_buf()))?;
        self.dir(guest);
        for f in files {
            let rel = f.strip_prefix(host).map_err(|e| e.to_string())?;
            self.program(&format!("{guest}/{}", rel.display()), &f, &[])?;
        }
        Ok(())
    }

    /// Writes a newc cpio archive (what the kernel unpacks as initramfs);
    /// uncompressed, which boots fastest under TCG. Returns its size.
    pub(super) fn write(&self, out: &Path) -> Result<u64> {
        let tmp = out.with_extension("tmp");
        let f = fs::File::create(&tmp).map_err(|e| format!("vmtest: {}: {e}", tmp.display()))?;
        let mut w = Counted {
            inner: BufWriter::with_capacity(1 << 20, f),
            n: 0,
        };
        let io = |e: io::Error| format!("vmtest: writing {}: {e}", tmp.display());
        for (ino, (path, entry)) in self.entries.iter().enumerate() {
            let name = path.trim_start_matches('/');
            let ino = ino as u32 + 1;
            match entry {
                Entry::Dir => cpio_header(&mut w, ino, 0o040755, 0, name, 2).map_err(io)?,
                Entry::Symlink(t) => {
                    cpio_header(&mut w, ino, 0o120777, t.len() as u64, name, 1).map_err(io)?;
                    w.write_all(t.as_bytes()).map_err(io)?;
                    pad4(&mut w).map_err(io)?;
                }
                Entry::File {
                    src: Src::Bytes(b),
                    mode,
                } => {
                    cpio_header(&mut w, ino, 0o100000 | mode, b.len() as u64, name, 1)
                        .map_err(io)?;
                    w.write_all(b).map_err(io)?;
                    pad4(&mut w).map_err(io)?;
                }
                Entry::File {
                    src: Src::Host(h),
                    mode,
                } => {
                    let data = fs::read(h).map_err(|e| format!("vmtest: {}: {e}", h.display()))?;
                    cpio_header(&mut w, ino, 0o100000 | mode, data.len() as u64, name, 1)
                        .map_err(io)?;
                    w.write_all(&data).map_err(io)?;
                    pad4(&mut w).map_err(io)?;
                }
            }
        }
        cpio_header(&mut w, 0, 0, 0, "TRAILER!!!", 1).map_err(io)?;
        w.flush().map_err(io)?;
        let n = w.n;
        drop(w);
        fs::rename(&tmp, out).map_err(|e| format!("vmtest: {}: {e}", out.display()))?;
        Ok(n)
    }
}

struct Counted<W: Write> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(b)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn cpio_header<W: Write>(
    w: &mut Counted<W>,
    ino: u32,
    mode: u32,
    size: u64,
    name: &str,
    nlink: u32,
) -> io::Result<()> {
    let size = u32::try_from(size).map_err(|_| io::Error::other(format!("{name}: over 4 GB")))?;
    write!(
        w,
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        name.len() + 1,
        0
    )?;
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    pad4(w)
}

fn pad4<W: Write>(w: &mut Counted<W>) -> io::Result<()> {
    let pad = (4 - (w.n % 4) as usize) % 4;
    w.write_all(&[0u8; 3][..pad])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, data) of each member of a newc archive, checking the
    /// 4-byte alignment the kernel's unpacker needs.
    fn members(d: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let hex = |o: usize| u32::from_str_radix(std::str::from_utf8(&d[o..o + 8]).unwrap(), 16);
        let mut o = 0;
        let mut out = Vec::new();
        loop {
            assert_eq!(o % 4, 0);
            assert_eq!(&d[o..o + 6], b"070701");
            let mode = hex(o + 14).unwrap();
            let size = hex(o + 54).unwrap() as usize;
            let namesize = hex(o + 94).unwrap() as usize;
            let name = String::from_utf8(d[o + 110..o + 110 + namesize - 1].to_vec()).unwrap();
            o = (o + 110 + namesize + 3) & !3;
            let data = d[o..o + size].to_vec();
            o = (o + size + 3) & !3;
            if name == "TRAILER!!!" {
                assert_eq!(o, d.len());
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn merged_usr_tree_as_newc_cpio() {
        assert_eq!(
            usrmerge("/lib/x86_64-linux-gnu/libc.so.6"),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(usrmerge("/sbin"), "/usr/sbin");
        assert_eq!(usrmerge("/library"), "/library");
        let mut ir = Initramfs::new();
        ir.bytes("/sbin/odd", "abcde", 0o755);
        ir.bytes("/etc/hosts", "x", 0o644);
        let out = std::env::temp_dir().join(format!("vmtest-cpio-{}", std::process::id()));
        let size = ir.write(&out).unwrap();
        let data = fs::read(&out).unwrap();
        let _ = fs::remove_file(&out);
        assert_eq!(size, data.len() as u64);
        let m = members(&data);
        let find = |n: &str| m.iter().find(|e| e.0 == n).unwrap_or_else(|| panic!("{n}"));
        assert_eq!(find("usr/sbin/odd").1, 0o100755);
        assert_eq!(find("usr/sbin/odd").2, b"abcde");
        assert_eq!(find("etc/hosts").1, 0o100644);
        assert_eq!(find("usr/sbin").1, 0o040755);
        assert_eq!(find("sbin").1, 0o120777);
        assert_eq!(find("sbin").2, b"usr/sbin");
        assert_eq!(find("var/run").2, b"/run");
        // sorted by path, so parents come before their children
        let names: Vec<&str> = m.iter().map(|e| e.0.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
