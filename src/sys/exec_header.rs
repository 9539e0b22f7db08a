//! Why a file that exists and has its execute bits would still not run: what
//! execve(2) reads from its first bytes. execve says only ENOENT ("No such file or
//! directory") when an ELF binary's loader or a script's `#!` interpreter is
//! missing, which reads as "dockerd is not there" although it is; and ENOEXEC for a
//! binary of another architecture or a file of no executable format. The usual case:
//! a dockerd built against glibc copied into a musl (Alpine) image, whose
//! `/lib64/ld-linux-x86-64.so.2` is not there.
//!
//! Only the header is read (at most [`HEADER_MAX`] bytes); nothing is run. See
//! [elf(5)](https://man7.org/linux/man-pages/man5/elf.5.html) and execve(2)'s
//! "Interpreter scripts".

use std::io::Read;
use std::path::Path;

/// How much of the file is read: the ELF and program headers of any real binary
/// (the interpreter's path follows them closely), or a `#!` line.
pub const HEADER_MAX: usize = 4096;

const PT_INTERP: u32 = 3;

/// What the first bytes say about running a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing speaks against it (or it could not be read: exec will say why).
    Runs,
    /// exec will fail, and why.
    Fails(String),
    /// A binary for another architecture than this dind-init's: exec fails unless
    /// the kernel runs it another way (binfmt_misc with qemu-user), so only a warning
    /// before trying.
    Foreign(String),
}

impl Verdict {
    /// The reason, for a file exec already refused.
    pub fn reason(self) -> Option<String> {
        match self {
            Verdict::Runs => None,
            Verdict::Fails(why) | Verdict::Foreign(why) => Some(why),
        }
    }
}

/// What `path`'s first bytes say. Only a regular file is read (a FIFO at the path
/// would block the read).
pub fn inspect(path: &Path) -> Verdict {
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Verdict::Runs;
    }
    let mut head = Vec::with_capacity(HEADER_MAX);
    match std::fs::File::open(path).and_then(|f| f.take(HEADER_MAX as u64).read_to_end(&mut head)) {
        Ok(_) => inspect_bytes(&head, |p| Path::new(p).exists()),
        Err(_) => Verdict::Runs,
    }
}

/// [`inspect`] on the header bytes, with `exists` for the interpreter's path.
pub fn inspect_bytes(head: &[u8], exists: impl Fn(&str) -> bool) -> Verdict {
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        // The kernel splits the line at spaces and tabs only: a CRLF script's
        // interpreter ends in '\r'.
        let interpreter = line
            .trim_start_matches([' ', '\t'])
            .split([' ', '\t'])
            .next()
            .unwrap_or_default();
        return if interpreter.is_empty() {
            Verdict::Fails("its #! line names no interpreter".to_owned())
        } else if exists(interpreter) {
            Verdict::Runs
        } else if let Some(bare) = interpreter.strip_suffix('\r') {
            Verdict::Fails(format!(
                "its #! line names {bare} followed by a carriage return (CRLF line endings): convert the script to LF"
            ))
        } else {
            Verdict::Fails(format!(
                "its #! line names {interpreter}, which does not exist in this image"
            ))
        };
    }
    if !head.starts_with(b"\x7fELF") {
        return Verdict::Fails("it is neither an ELF binary nor a #! script".to_owned());
    }
    let Some(elf) = Elf::parse(head) else {
        return Verdict::Runs;
    };
    if let Some(arch) = elf.foreign_arch() {
        return Verdict::Foreign(format!(
            "it is a binary for {arch}, and this dind-init is built for {}",
            std::env::consts::ARCH
        ));
    }
    match elf.interpreter(head) {
        Some(interp) if !exists(&interp) => Verdict::Fails(format!(
            "its ELF interpreter (dynamic loader) {interp} does not exist in this image: \
             a dynamically linked build for another C library (glibc vs musl)"
        )),
        _ => Verdict::Runs,
    }
}

/// What is needed of an ELF file's header.
struct Elf {
    wide: bool,
    little: bool,
    machine: u16,
    phoff: u64,
    phentsize: u64,
    phnum: u64,
}

impl Elf {
    fn parse(h: &[u8]) -> Option<Elf> {
        let wide = match h.get(4)? {
            1 => false,
            2 => true,
            _ => return None,
        };
        let little = match h.get(5)? {
            1 => true,
            2 => false,
            _ => return None,
        };
        let num = |at: usize, len: usize| read_uint(h, at, len, little);
        let (phoff, phentsize, phnum) = if wide {
            (num(32, 8)?, num(54, 2)?, num(56, 2)?)
        } else {
            (num(28, 4)?, num(42, 2)?, num(44, 2)?)
        };
        Some(Elf {
            wide,
            little,
            machine: u16::try_from(num(18, 2)?).ok()?,
            phoff,
            phentsize,
            phnum,
        })
    }

    /// The architecture's name when the binary is not for the one this init runs on.
    fn foreign_arch(&self) -> Option<&'static str> {
        let arch = match self.machine {
            3 => "x86 (32-bit)",
            40 => "arm (32-bit)",
            62 => "x86_64",
            183 => "aarch64",
            243 => "riscv64",
            21 => "ppc64",
            22 => "s390x",
            // Unknown to this list: let exec decide.
            _ => return None,
        };
        let native = match std::env::consts::ARCH {
            "x86" => "x86 (32-bit)",
            "arm" => "arm (32-bit)",
            "powerpc64" => "ppc64",
            other => other,
        };
        // The 32-bit sibling usually runs (compat mode).
        let compat = matches!(
            (native, arch),
            ("x86_64", "x86 (32-bit)") | ("aarch64", "arm (32-bit)")
        );
        (arch != native && !compat).then_some(arch)
    }

    /// PT_INTERP's path, when it lies within the bytes read.
    fn interpreter(&self, h: &[u8]) -> Option<String> {
        let num = |at: u64, len: usize| read_uint(h, usize::try_from(at).ok()?, len, self.little);
        for i in 0..self.phnum {
            let ph = self.phoff.checked_add(i.checked_mul(self.phentsize)?)?;
            if num(ph, 4)? != u64::from(PT_INTERP) {
                continue;
            }
            let (offset, size) = if self.wide {
                (num(ph + 8, 8)?, num(ph + 32, 8)?)
            } else {
                (num(ph + 4, 4)?, num(ph + 16, 4)?)
            };
            let start = usize::try_from(offset).ok()?;
            let end = start.checked_add(usize::try_from(size).ok()?)?;
            let bytes = h.get(start..end)?;
            let bytes = bytes.split(|&b| b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(bytes).into_owned());
        }
        None
    }
}

/// An unsigned number of `len` bytes at `at`, in the file's byte order.
fn read_uint(h: &[u8], at: usize, len: usize, little: bool) -> Option<u64> {
    let bytes = h.get(at..at.checked_add(len)?)?;
    let fold = |acc: u64, &b: &u8| (acc << 8) | u64::from(b);
    Some(if little {
        bytes.iter().rev().fold(0, fold)
    } else {
        bytes.iter().fold(0, fold)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal little-endian ELF64 header for `machine` with one PT_INTERP
    /// program header pointing at `interp` (when given).
    fn elf64(machine: u16, interp: Option<&str>) -> Vec<u8> {
        let mut h = vec![0u8; 64 + 56];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h[32..40].copy_from_slice(&64u64.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&1u16.to_le_bytes());
        if let Some(path) = interp {
            let off = h.len() as u64;
            h[64..68].copy_from_slice(&PT_INTERP.to_le_bytes());
            h[72..80].copy_from_slice(&off.to_le_bytes());
            h[96..104].copy_from_slice(&(path.len() as u64 + 1).to_le_bytes());
            h.extend_from_slice(path.as_bytes());
            h.push(0);
        }
        h
    }

    fn native_machine() -> u16 {
        match std::env::consts::ARCH {
            "aarch64" => 183,
            _ => 62,
        }
    }

    #[test]
    fn headers_table() {
        let exists = |p: &str| p == "/bin/sh" || p == "/lib/ld-musl-x86_64.so.1";
        let foreign = if native_machine() == 62 { 183 } else { 62 };
        let fails = |w: &'static str| Some((false, w));
        // (header, None: runs | Some((foreign, words of the reason)))
        type Case = (Vec<u8>, Option<(bool, &'static str)>);
        let cases: Vec<Case> = vec![
            (b"#!/bin/sh\necho hi\n".to_vec(), None),
            (b"#! /bin/sh -e\n".to_vec(), None),
            (b"#!/bin/sh\t-e\n".to_vec(), None),
            (
                b"#!/nonexistent/interp\n".to_vec(),
                fails("its #! line names /nonexistent/interp, which does not exist"),
            ),
            (
                b"#!/bin/sh\r\necho hi\r\n".to_vec(),
                fails("names /bin/sh followed by a carriage return (CRLF line endings)"),
            ),
            (b"#!\n".to_vec(), fails("names no interpreter")),
            (b"garbage".to_vec(), fails("neither an ELF binary nor a #! script")),
            (Vec::new(), fails("neither an ELF binary")),
            (elf64(native_machine(), None), None),
            (elf64(native_machine(), Some("/lib/ld-musl-x86_64.so.1")), None),
            (
                elf64(native_machine(), Some("/lib64/ld-linux-x86-64.so.2")),
                fails("its ELF interpreter (dynamic loader) /lib64/ld-linux-x86-64.so.2 does not exist"),
            ),
            (elf64(foreign, None), Some((true, "it is a binary for"))),
            // The 32-bit sibling runs in compat mode; an unknown machine: exec decides.
            (elf64(if native_machine() == 62 { 3 } else { 40 }, None), None),
            (elf64(9999, None), None),
        ];
        for (head, want) in cases {
            let got = inspect_bytes(&head, exists);
            let shown = String::from_utf8_lossy(&head).into_owned();
            match (want, got) {
                (None, got) => assert_eq!(got, Verdict::Runs, "{shown:?}"),
                (Some((false, w)), Verdict::Fails(why)) => {
                    assert!(why.contains(w), "{shown:?}: {why}")
                }
                (Some((true, w)), Verdict::Foreign(why)) => {
                    assert!(why.contains(w), "{shown:?}: {why}")
                }
                (Some(w), got) => panic!("{shown:?}: got {got:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn truncated_and_hostile_headers_never_panic() {
        let full = elf64(native_machine(), Some("/lib64/ld-linux-x86-64.so.2"));
        for len in 0..full.len() {
            let _ = inspect_bytes(&full[..len], |_| false);
        }
        let mut huge = elf64(native_machine(), None);
        huge[56..58].copy_from_slice(&u16::MAX.to_le_bytes());
        huge[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(inspect_bytes(&huge, |_| false), Verdict::Runs);
    }

    #[test]
    fn real_binaries_on_this_machine() {
        // The test binary itself runs here, so nothing is wrong with it.
        let me = std::env::current_exe().unwrap();
        assert_eq!(inspect(&me), Verdict::Runs);
        assert_eq!(inspect(Path::new("/bin/sh")), Verdict::Runs);
        // Not a regular file: not read (a FIFO would block).
        assert_eq!(inspect(Path::new("/dev/null")), Verdict::Runs);
    }
}
