//! The Debian mirror `cargo xtask vmtest` downloads from, taken from the
//! host's own apt configuration: `/etc/apt/sources.list`, and the
//! one-line `*.list` and deb822 `*.sources` files in
//! `/etc/apt/sources.list.d/` (the files apt itself reads; others, such
//! as `*.disabled`, are skipped as apt skips them). No mirror is written
//! in the code: a host without a Debian entry gets a message saying so.
//!
//! `DLM_VMTEST_MIRROR` and `DLM_VMTEST_SECURITY_MIRROR` override what the
//! host's files say.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the host's apt configuration lives.
const SOURCES_LIST: &str = "/etc/apt/sources.list";
const SOURCES_DIR: &str = "/etc/apt/sources.list.d";

/// Debian's codenames and suite aliases: an entry for one of these (or its
/// `-updates`, `-backports`, `-proposed-updates` or `-security` form) is
/// a Debian archive, whatever its host is called. Any Debian mirror serves
/// every current suite, so a host on another release still works.
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldoldstable",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];

/// One `deb` source: its URIs and suites (components and options are not
/// needed to pick a mirror).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub uris: Vec<String>,
    pub suites: Vec<String>,
}

/// The mirrors vmtest uses, and where they were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirrors {
    /// The Debian archive (suites bookworm, -updates, -backports).
    pub archive: String,
    /// The security archive, when one is configured.
    pub security: Option<String>,
    /// Where `archive` came from (a file, or the environment variable).
    pub origin: String,
}

/// Parses one-line style (`sources.list`, `*.list`): `deb [options] URI
/// SUITE [COMPONENT...]`. Comments, `deb-src` and malformed lines are
/// skipped.
pub fn parse_one_line(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb") else {
            continue;
        };
        if !rest.starts_with([' ', '\t']) {
            continue; // deb-src, or something else
        }
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(Source {
            uris: vec![uri.to_string()],
            suites: vec![suite.to_string()],
        });
    }
    out
}

/// Parses deb822 style (`*.sources`): paragraphs separated by blank lines,
/// `Field: value` lines, continuation lines starting with white space,
/// `#` comments. Paragraphs whose `Types` lack `deb`, or with
/// `Enabled: no`, are skipped.
pub fn parse_deb822(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let is_deb = get("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = get("Enabled").is_none_or(|e| !e.trim().eq_ignore_ascii_case("no"));
        if let (true, true, Some(uris), Some(suites)) =
            (is_deb, enabled, get("URIs"), get("Suites"))
        {
            let uris: Vec<String> = uris.split_whitespace().map(str::to_string).collect();
            let suites: Vec<String> = suites.split_whitespace().map(str::to_string).collect();
            if !uris.is_empty() && !suites.is_empty() {
                out.push(Source { uris, suites });
            }
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut fields);
    out
}

/// Which of the two mirrors vmtest needs a Debian suite comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SuiteKind {
    /// The archive: `bookworm`, `-updates`, `-backports`, ...
    Archive,
    /// The security archive: `-security` (or the old `/updates`).
    Security,
}

/// Whether a suite is Debian's (its base codename, as in
/// `bookworm-backports` → `bookworm` or `bookworm/updates` → `bookworm`,
/// is one of Debian's), and then which mirror it comes from.
fn suite_kind(suite: &str) -> Option<SuiteKind> {
    let suite = suite.trim_end_matches('/');
    let (base, tail) = match suite.find(['-', '/']) {
        Some(i) => (&suite[..i], &suite[i + 1..]),
        None => (suite, ""),
    };
    if !DEBIAN_SUITES.contains(&base) {
        return None;
    }
    match tail {
        "" | "updates" if !suite.contains('/') => Some(SuiteKind::Archive),
        "backports" | "proposed-updates" | "backports-sloppy" => Some(SuiteKind::Archive),
        "security" | "updates" => Some(SuiteKind::Security), // `bookworm/updates`: the old security name
        _ => None,
    }
}

/// Picks the Debian archive and security mirrors from parsed sources, in
/// the order apt reads them: the first URI of the first entry with a
/// Debian suite of each kind.
pub fn pick(sources: &[Source]) -> (Option<String>, Option<String>) {
    let mut archive = None;
    let mut security = None;
    for s in sources {
        let Some(uri) = s.uris.first() else { continue };
        let uri = uri.trim_end_matches('/').to_string();
        for suite in &s.suites {
            match suite_kind(suite) {
                Some(SuiteKind::Archive) if archive.is_none() => archive = Some(uri.clone()),
                Some(SuiteKind::Security) if security.is_none() => security = Some(uri.clone()),
                _ => {}
            }
        }
    }
    (archive, security)
}

/// The files apt reads, in its order: `sources.list`, then
/// `sources.list.d/` sorted by name, `*.list` and `*.sources` only.
fn host_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from(SOURCES_LIST)];
    if let Ok(dir) = fs::read_dir(SOURCES_DIR) {
        let mut more: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
}

fn parse_file(path: &Path) -> Vec<Source> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    if path.extension().is_some_and(|e| e == "sources") {
        parse_deb822(&text)
    } else {
        parse_one_line(&text)
    }
}

fn find() -> Result<Mirrors, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    find_in(
        &host_files(),
        env("DLM_VMTEST_MIRROR"),
        env("DLM_VMTEST_SECURITY_MIRROR"),
    )
}

/// The mirrors from `files` (in apt's order), unless overridden.
fn find_in(
    files: &[PathBuf],
    archive_override: Option<String>,
    security_override: Option<String>,
) -> Result<Mirrors, String> {
    let mut archive = archive_override.map(|m| (m, "DLM_VMTEST_MIRROR".to_string()));
    let mut security = security_override;
    for file in files {
        if archive.is_some() && security.is_some() {
            break;
        }
        let (a, s) = pick(&parse_file(file));
        if archive.is_none() {
            archive = a.map(|a| (a, file.display().to_string()));
        }
        if security.is_none() {
            security = s;
        }
    }
    match archive {
        Some((archive, origin)) => Ok(Mirrors {
            archive: archive.trim_end_matches('/').to_string(),
            security: security.map(|s| s.trim_end_matches('/').to_string()),
            origin,
        }),
        None => Err(format!(
            "vmtest: no Debian mirror is configured on this host: none of {SOURCES_LIST}, \
             {SOURCES_DIR}/*.list or {SOURCES_DIR}/*.sources has a `deb` entry for a Debian \
             suite (bookworm, trixie, stable, ...). Add one (see sources.list(5)), or set \
             DLM_VMTEST_MIRROR to a Debian mirror's URL"
        )),
    }
}

/// The host's Debian mirrors, looked up once per run; the first call
/// prints where they came from.
pub fn mirrors() -> Result<&'static Mirrors, String> {
    static FOUND: OnceLock<Result<Mirrors, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let m = find()?;
            println!("vmtest: Debian mirror {} (from {})", m.archive, m.origin);
            match &m.security {
                Some(s) => println!("vmtest: security mirror {s}"),
                None => println!(
                    "vmtest: no security mirror configured (no `*-security` suite, no \
                     DLM_VMTEST_SECURITY_MIRROR): the guests get the point-release packages"
                ),
            }
            Ok(m)
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Sample host files; the URLs use reserved example names.
    const ONE_LINE: &str = "\
# a comment
deb http://mirror.example.invalid/archive bookworm main contrib
deb-src http://src.example.invalid/archive bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.example.invalid/archive/ bookworm-updates main
   deb http://security.example.invalid/archive-security bookworm-security main # trailing
deb http://other.example.invalid/apt nodistro main
debx http://bad.example.invalid/ bookworm main
deb [unterminated http://bad.example.invalid/ bookworm main
deb http://lonely.example.invalid/
";

    const DEB822: &str = "\
Types: deb deb-src
# http://snapshot.example.invalid/archive/debian/20250520T000000Z
URIs: http://a.example.invalid/archive/ http://b.example.invalid/archive
Suites: bookworm bookworm-updates
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb-src
URIs: http://src-only.example.invalid/archive-security
Suites: bookworm-security

Types: deb
URIs: http://disabled.example.invalid/archive-security
Suites: bookworm-security
Enabled: no

types: deb
uris: http://sec.example.invalid/archive-security
suites: bookworm-security
components: main
";

    #[test]
    fn one_line_entries() {
        let s = parse_one_line(ONE_LINE);
        let pairs: Vec<(&str, &str)> = s
            .iter()
            .map(|s| (s.uris[0].as_str(), s.suites[0].as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("http://mirror.example.invalid/archive", "bookworm"),
                ("http://mirror.example.invalid/archive/", "bookworm-updates"),
                (
                    "http://security.example.invalid/archive-security",
                    "bookworm-security"
                ),
                ("http://other.example.invalid/apt", "nodistro"),
            ]
        );
        assert_eq!(
            pick(&s),
            (
                Some("http://mirror.example.invalid/archive".into()),
                Some("http://security.example.invalid/archive-security".into())
            )
        );
    }

    #[test]
    fn deb822_entries() {
        let s = parse_deb822(DEB822);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(
            s[0].uris,
            [
                "http://a.example.invalid/archive/",
                "http://b.example.invalid/archive"
            ]
        );
        assert_eq!(s[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(
            pick(&s),
            (
                Some("http://a.example.invalid/archive".into()),
                Some("http://sec.example.invalid/archive-security".into())
            )
        );
    }

    #[test]
    fn host_files_in_order_and_none_configured() {
        let dir = std::env::temp_dir().join(format!("dlm-apt-sources-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let list = dir.join("sources.list");
        let other = dir.join("other.sources");
        let debian = dir.join("zz-debian.sources");
        fs::write(&list, "deb http://x.example.invalid/apt nodistro main\n").unwrap();
        fs::write(
            &other,
            "Types: deb\nURIs: http://y.example.invalid/\nSuites: stable\n",
        )
        .unwrap();
        fs::write(&debian, DEB822).unwrap();
        let m = find_in(&[list.clone(), other.clone(), debian.clone()], None, None).unwrap();
        assert_eq!(m.archive, "http://y.example.invalid");
        assert_eq!(m.origin, other.display().to_string());
        assert_eq!(
            m.security.as_deref(),
            Some("http://sec.example.invalid/archive-security")
        );
        let m = find_in(
            std::slice::from_ref(&debian),
            Some("http://o.example.invalid/d/".into()),
            None,
        )
        .unwrap();
        assert_eq!(
            (m.archive.as_str(), m.origin.as_str()),
            ("http://o.example.invalid/d", "DLM_VMTEST_MIRROR")
        );
        // a host without a Debian entry (or without files) is told so
        let e = find_in(&[list, dir.join("missing.list")], None, None).unwrap_err();
        assert!(e.contains("no Debian mirror is configured"), "{e}");
        assert!(e.contains("DLM_VMTEST_MIRROR"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_debian_suites_count() {
        let s = parse_one_line(
            "deb http://x.example.invalid/ubuntu noble main\n\
             deb http://y.example.invalid/apt nodistro main\n\
             deb http://z.example.invalid/archive buster/updates main\n",
        );
        // Ubuntu and third-party suites are no Debian archive; the old
        // `buster/updates` security name is a security archive.
        assert_eq!(
            pick(&s),
            (None, Some("http://z.example.invalid/archive".into()))
        );
        assert_eq!(pick(&parse_deb822("")), (None, None));
        let s = parse_deb822(
            "Types: deb\nURIs: http://t.example.invalid/d\nSuites: trixie-backports\n",
        );
        assert_eq!(pick(&s).0.as_deref(), Some("http://t.example.invalid/d"));
    }
}
