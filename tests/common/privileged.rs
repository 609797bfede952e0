//! Faults only root can make: a small file system that fills up, and files
//! that even an open descriptor cannot write. Without the privilege the test
//! says it was skipped, unless `FEEDTOP_REQUIRE_DISK_FAULTS` is set (CI sets
//! it where it is root), in which case it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!("{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Err(format!("{program}: {e}")),
    }
}

fn unavailable(what: &str, why: String) {
    if std::env::var_os("FEEDTOP_REQUIRE_DISK_FAULTS").is_some() {
        panic!("FEEDTOP_REQUIRE_DISK_FAULTS is set but {what} is not possible here: {why}");
    }
    eprintln!("skipped: {what} needs root ({why})");
}

/// A tmpfs of a given size, unmounted on drop.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_str().unwrap();
        match run("mount", &["-t", "tmpfs", "-o", &format!("size={size}"), "feedtop-test", target]) {
            Ok(()) => Some(Self { dir }),
            Err(why) => {
                unavailable("mounting a small file system", why);
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Frees space by resizing the file system in place.
    pub fn grow(&self, size: &str) {
        let target = self.dir.path().to_str().unwrap();
        run("mount", &["-o", &format!("remount,size={size}"), target]).expect("resizing the tmpfs");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = run("umount", &["--lazy", self.dir.path().to_str().unwrap()]);
    }
}

/// Files with the immutable attribute set, cleared on drop.
pub struct Immutable {
    files: Vec<PathBuf>,
}

impl Immutable {
    pub fn set(files: &[PathBuf]) -> Option<Self> {
        let files: Vec<PathBuf> = files.iter().filter(|f| f.exists()).cloned().collect();
        let guard = Self { files };
        for file in &guard.files {
            if let Err(why) = run("chattr", &["+i", file.to_str().unwrap()]) {
                unavailable("making a file immutable", why);
                return None;
            }
        }
        Some(guard)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = run("chattr", &["-i", file.to_str().unwrap()]);
        }
    }
}
