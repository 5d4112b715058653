//! A node's default id: generated once into its data directory and reused by every later
//! start, so a restarted node keeps its name on the broker and in logs.
//!
//! Several nodes may share one data directory (`chatnode bench --spawn`, tests), and two
//! live processes must never share an id. Ids live in `node-ids/<n>`, each file held with
//! an exclusive OS lock (`flock`) for the life of the process; a starting node takes the
//! first slot no live process holds. The kernel drops a dead process's lock, so a node
//! restarted after `kill -9` gets its slot (and id) back.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Most nodes that can share one data directory at once; beyond it, startup fails clearly.
pub const MAX_SLOTS: usize = 256;
const DIR: &str = "node-ids";

/// An id and the locked file that reserves it; the reservation ends when this is dropped.
#[derive(Debug)]
pub struct ClaimedId {
    pub id: String,
    _lock: File,
}

/// Takes the first free slot under `data_dir`, generating its id if the slot is new.
pub fn claim(data_dir: &Path) -> std::io::Result<ClaimedId> {
    let dir = data_dir.join(DIR);
    std::fs::create_dir_all(&dir)?;
    for slot in 0..MAX_SLOTS {
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(slot.to_string()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let mut id = String::new();
        file.read_to_string(&mut id)?;
        let id = id.trim();
        if is_valid(id) {
            return Ok(ClaimedId {
                id: id.to_string(),
                _lock: file,
            });
        }
        // A new slot, or one whose write was cut short by a crash: (re)generate its id.
        let id = crate::config::random_node_id();
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(id.as_bytes())?;
        file.sync_all()?;
        return Ok(ClaimedId { id, _lock: file });
    }
    Err(std::io::Error::other(format!(
        "all {MAX_SLOTS} node ids in {} are held by running nodes",
        dir.display()
    )))
}

/// What `random_node_id` writes: `node-` and 12 hex digits.
fn is_valid(id: &str) -> bool {
    id.strip_prefix("node-")
        .is_some_and(|hex| hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_kept_across_restarts_and_never_shared_by_live_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim(dir.path()).unwrap();
        let second = claim(dir.path()).unwrap();
        assert_ne!(first.id, second.id, "two live nodes never share an id");
        let first_id = first.id.clone();
        drop(first);
        let restarted = claim(dir.path()).unwrap();
        assert_eq!(restarted.id, first_id, "a restarted node gets its id back");
        let third = claim(dir.path()).unwrap();
        assert!(third.id != first_id && third.id != second.id);
    }

    #[test]
    fn a_torn_id_file_is_regenerated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(DIR)).unwrap();
        std::fs::write(dir.path().join(DIR).join("0"), "node-12").unwrap();
        let claimed = claim(dir.path()).unwrap();
        assert!(is_valid(&claimed.id), "{}", claimed.id);
        let regenerated = claimed.id.clone();
        drop(claimed);
        assert_eq!(claim(dir.path()).unwrap().id, regenerated);
    }
}
