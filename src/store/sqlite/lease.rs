//! Relay leases on SQLite: a lock file per lease beside the database.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::store::{RelayLease, StoreError, StoreResult};

/// The lock file of relay lease `key`, beside the database: every node sharing the file is
/// on this machine, so the kernel's lock on it is shared by all of them.
pub(super) fn lease_path(database: &Path, key: u32) -> PathBuf {
    let mut name = database.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".relay-{key}.lock"));
    database.with_file_name(name)
}

/// A relay lease held as an exclusive `flock` on its lock file, which the kernel releases
/// when the process dies however it dies.
pub(super) struct FileLease {
    path: PathBuf,
    file: std::fs::File,
}

impl FileLease {
    pub(super) fn try_take(path: PathBuf) -> StoreResult<Option<Self>> {
        let what = format!("cannot open the relay lock {}", path.display());
        // A read-only disk still lets an existing lock file be locked.
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .or_else(|_| std::fs::File::open(&path))
            .map_err(|e| StoreError::from_io(&what, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { path, file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::from_io(&what, e)),
        }
    }

    /// The lock guards the file it was taken on: if that file was removed or replaced, a
    /// node opening the path now would lock another one, so this lease is no longer sure.
    fn still_the_locked_file(&self) -> StoreResult<()> {
        use std::os::unix::fs::MetadataExt;
        let held = self.file.metadata();
        let named = std::fs::metadata(&self.path);
        match (held, named) {
            (Ok(held), Ok(named)) if (held.dev(), held.ino()) == (named.dev(), named.ino()) => {
                Ok(())
            }
            _ => Err(StoreError::internal(format!(
                "the relay lock file {} was removed or replaced",
                self.path.display()
            ))),
        }
    }
}

#[async_trait]
impl RelayLease for FileLease {
    async fn confirm(&mut self) -> StoreResult<()> {
        // Two stat calls: cheap enough for the async worker.
        self.still_the_locked_file()
    }

    async fn release(self: Box<Self>) -> StoreResult<()> {
        let what = format!("cannot unlock {}", self.path.display());
        self.file
            .unlock()
            .map_err(|e| StoreError::from_io(&what, e))
    }
}
