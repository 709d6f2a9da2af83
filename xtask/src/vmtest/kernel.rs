//! The kernel of a guest: from Debian's `linux-image-*` package, the
//! uncompressed ELF `vmlinux` qemu boots (extracted from the bzImage once
//! and cached) and the modules the guest loads, decompressed and ordered
//! by the dependencies recorded in their `.modinfo` (the package carries
//! no `modules.dep`).

use super::args::Kernel;
use super::cache::{Cache, Deb};
use super::{Result, file_len, walk};
use crate::host::in_path;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(Clone)]
pub(super) struct KernelImage {
    pub(super) kernel: Kernel,
    pub(super) kver: String,
    pub(super) version: String,
    pub(super) vmlinux: PathBuf,
    /// Decompressed modules, cached.
    moddir: PathBuf,
    /// Module name (with '_') -> file in the unpacked package.
    index: HashMap<String, PathBuf>,
    builtin: HashSet<String>,
}

impl KernelImage {
    /// Unpacks the kernel package, extracts its vmlinux (once) and indexes
    /// its modules.
    pub(super) fn prepare(cache: &Cache, kernel: Kernel, deb: &Deb) -> Result<KernelImage> {
        let x = cache.unpack(deb)?;
        let mut kver = None;
        let mut modroot = None;
        for base in ["lib/modules", "usr/lib/modules"] {
            if let Ok(rd) = fs::read_dir(x.join(base)) {
                for e in rd.flatten() {
                    kver = Some(e.file_name().to_string_lossy().into_owned());
                    modroot = Some(e.path());
                }
            }
        }
        let (kver, modroot) = kver
            .zip(modroot)
            .ok_or_else(|| format!("vmtest: no lib/modules in {}", deb.path.display()))?;
        let vmlinuz = ["boot", "usr/boot"]
            .iter()
            .map(|b| x.join(b).join(format!("vmlinuz-{kver}")))
            .find(|p| p.exists())
            .ok_or_else(|| format!("vmtest: no vmlinuz-{kver} in {}", deb.path.display()))?;
        let kdir = cache.dir(&format!("kernels/{kver}"));
        let vmlinux = kdir.join("vmlinux");
        if !vmlinux.exists() {
            let t = Instant::now();
            extract_vmlinux(&vmlinuz, &vmlinux)?;
            println!(
                "vmtest: extracted vmlinux of {kver} ({:.0} MB) in {:.1} s",
                file_len(&vmlinux) as f64 / 1e6,
                t.elapsed().as_secs_f64()
            );
        }
        let mut index = HashMap::new();
        walk(&modroot.join("kernel"), &mut |p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            for ext in [".ko", ".ko.xz", ".ko.zst", ".ko.gz"] {
                if let Some(stem) = n.strip_suffix(ext) {
                    index.insert(stem.replace('-', "_"), p.to_path_buf());
                }
            }
        })?;
        let builtin = fs::read_to_string(modroot.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .map(|n| n.trim_end_matches(".ko").replace('-', "_"))
            .collect();
        Ok(KernelImage {
            kernel,
            kver,
            version: deb.version.clone(),
            vmlinux,
            moddir: cache.dir(&format!(
                "kernels/{}/modules",
                kdir.file_name().unwrap().to_string_lossy()
            )),
            index,
            builtin,
        })
    }

    /// The modules to insmod, dependencies first (the .deb has no
    /// modules.dep; dependencies come from each module's .modinfo).
    pub(super) fn modules(&self, wanted: &[&str]) -> Result<Vec<(String, PathBuf)>> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for w in wanted {
            self.visit(&w.replace('-', "_"), &mut seen, &mut order, 0)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut HashSet<String>,
        order: &mut Vec<(String, PathBuf)>,
        depth: usize,
    ) -> Result<()> {
        if !seen.insert(name.to_string()) || self.builtin.contains(name) {
            return Ok(());
        }
        if depth > 32 {
            return Err(format!("vmtest: module dependency loop at {name}"));
        }
        let src = self
            .index
            .get(name)
            .ok_or_else(|| format!("vmtest: kernel {} has no module {name}", self.kver))?;
        let ko = self.moddir.join(format!("{name}.ko"));
        if !ko.exists() {
            let s = src.to_string_lossy();
            let data = if s.ends_with(".xz") {
                decompress("xz", &["-dc"], &fs::read(src).map_err(|e| e.to_string())?)?
            } else if s.ends_with(".zst") {
                decompress("zstd", &["-dc"], &fs::read(src).map_err(|e| e.to_string())?)?
            } else if s.ends_with(".gz") {
                decompress("gzip", &["-dc"], &fs::read(src).map_err(|e| e.to_string())?)?
            } else {
                fs::read(src).map_err(|e| e.to_string())?
            };
            let tmp = ko.with_extension("tmp");
            fs::write(&tmp, &data).map_err(|e| format!("vmtest: {}: {e}", tmp.display()))?;
            fs::rename(&tmp, &ko).map_err(|e| e.to_string())?;
        }
        let data = fs::read(&ko).map_err(|e| e.to_string())?;
        let info = elf_section(&data, ".modinfo")
            .ok_or_else(|| format!("vmtest: {} has no .modinfo", ko.display()))?;
        for kv in info.split(|&b| b == 0) {
            if let Some(deps) = kv.strip_prefix(b"depends=") {
                for d in String::from_utf8_lossy(deps)
                    .split(',')
                    .filter(|d| !d.is_empty())
                {
                    self.visit(&d.replace('-', "_"), seen, order, depth + 1)?;
                }
            }
        }
        order.push((name.to_string(), ko));
        Ok(())
    }
}

/// The contents of the named section of a little-endian ELF64 file.
fn elf_section<'a>(d: &'a [u8], want: &str) -> Option<&'a [u8]> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at = |o: usize| Some(u64::from_le_bytes(d.get(o..o + 8)?.try_into().ok()?) as usize);
    if d.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let shoff = u64_at(0x28)?;
    let shentsize = u16_at(0x3a)?;
    let shnum = u16_at(0x3c)?;
    let shstrndx = u16_at(0x3e)?;
    let sh = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(sh(shstrndx) + 0x18)?;
    for i in 0..shnum {
        let name_off = u32_at(sh(i))?;
        let name = d.get(strtab + name_off..)?;
        let name = &name[..name.iter().position(|&b| b == 0)?];
        if name == want.as_bytes() {
            let off = u64_at(sh(i) + 0x18)?;
            let size = u64_at(sh(i) + 0x20)?;
            return d.get(off..off + size);
        }
    }
    None
}

/// Whether `d` is a whole ELF64 image (its section headers are inside it).
fn complete_elf(d: &[u8]) -> bool {
    if d.len() < 64 || &d[..5] != b"\x7fELF\x02" {
        return false;
    }
    let shoff = u64::from_le_bytes(d[0x28..0x30].try_into().unwrap()) as usize;
    let shentsize = u16::from_le_bytes([d[0x3a], d[0x3b]]) as usize;
    let shnum = u16::from_le_bytes([d[0x3c], d[0x3d]]) as usize;
    shoff.saturating_add(shentsize * shnum) <= d.len()
}

/// Unpacks the ELF vmlinux from a bzImage, like the kernel's
/// scripts/extract-vmlinux: try each xz/zstd magic in turn through the
/// xz/zstd tools (6.1 is xz, 6.12 zstd) until one yields a whole ELF image.
fn extract_vmlinux(vmlinuz: &Path, out: &Path) -> Result<()> {
    let data = fs::read(vmlinuz).map_err(|e| format!("vmtest: {}: {e}", vmlinuz.display()))?;
    let formats: [(&[u8], &str, &[&str]); 2] = [
        (b"\xfd7zXZ\x00", "xz", &["-dc", "--single-stream"]),
        (b"\x28\xb5\x2f\xfd", "zstd", &["-dc"]),
    ];
    for (magic, prog, args) in formats {
        let mut from = 0;
        let mut tries = 0;
        while let Some(i) = find(&data[from..], magic) {
            let start = from + i;
            from = start + 1;
            tries += 1;
            if tries > 16 {
                break;
            }
            if in_path(prog).is_none() {
                return Err(format!(
                    "vmtest: {prog} not found: apt-get install -y {prog}"
                ));
            }
            let Ok(elf) = decompress(prog, args, &data[start..]) else {
                continue;
            };
            if complete_elf(&elf) {
                let tmp = out.with_extension("tmp");
                fs::write(&tmp, &elf).map_err(|e| format!("vmtest: {}: {e}", tmp.display()))?;
                return fs::rename(&tmp, out).map_err(|e| e.to_string());
            }
        }
    }
    Err(format!(
        "vmtest: no xz or zstd compressed ELF kernel found in {}",
        vmlinuz.display()
    ))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Pipes `input` through `prog args`; returns what it wrote (also when it
/// complains about trailing data after the stream).
fn decompress(prog: &str, args: &[&str], input: &[u8]) -> Result<Vec<u8>> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("vmtest: {prog}: {e}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut outbuf = Vec::new();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = stdin.write_all(input);
        });
        let _ = stdout.read_to_end(&mut outbuf);
    });
    let _ = child.wait();
    if outbuf.is_empty() {
        return Err(format!("vmtest: {prog} produced nothing"));
    }
    Ok(outbuf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_sections_of_this_test_program() {
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(complete_elf(&me));
        assert!(!complete_elf(&me[..me.len() / 2]));
        assert!(!complete_elf(
            b"not an ELF file at all, but long enough to have a header..."
        ));
        let text = elf_section(&me, ".text").expect(".text");
        assert!(!text.is_empty());
        assert_eq!(elf_section(&me, ".no-such-section"), None);
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
    }
}
