//! Request ids: the validated id, and the request a task is serving, so the room events a
//! request causes carry its id from the HTTP answer to the broker and the other nodes.

use std::fmt;

/// Longest id taken from a request; a longer one is replaced, so logs stay bounded.
pub const MAX_LEN: usize = 128;

/// An id safe to log and to echo: 1 to [`MAX_LEN`] characters of `A-Z a-z 0-9 . _ : -`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

tokio::task_local! {
    static CURRENT: RequestId;
}

impl RequestId {
    pub fn parse(raw: &str) -> Option<Self> {
        let sane = !raw.is_empty()
            && raw.len() <= MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        sane.then(|| Self(raw.to_string()))
    }

    /// A fresh id: 32 hex digits.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the request this task (or [`Self::within_sync`] closure) serves, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `future` as serving the request `self`.
    pub async fn within<F: std::future::Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// Runs `work` as serving `request` (when there is one): for work handed to another
    /// thread, such as the SQLite writer's.
    pub fn within_sync<T>(request: Option<Self>, work: impl FnOnce() -> T) -> T {
        match request {
            Some(id) => CURRENT.sync_scope(id, work),
            None => work(),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_refused() {
        for kept in ["abc", "req-42_x.y:z", &"a".repeat(MAX_LEN)] {
            assert_eq!(RequestId::parse(kept).unwrap().as_str(), kept);
        }
        for refused in ["", "has space", "semi;colon", "é", &"a".repeat(MAX_LEN + 1)] {
            assert!(RequestId::parse(refused).is_none(), "{refused:?}");
        }
        let fresh = RequestId::generate().to_string();
        assert_eq!(fresh.len(), 32);
        assert!(fresh.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[tokio::test]
    async fn the_current_request_is_seen_by_its_task_and_by_work_it_hands_on() {
        assert_eq!(RequestId::current(), None);
        let id = RequestId::parse("req-1").unwrap();
        let seen = id.clone().within(async { RequestId::current() }).await;
        assert_eq!(seen.as_ref(), Some(&id));
        let handed = seen.clone();
        let on_thread =
            std::thread::spawn(move || RequestId::within_sync(handed, RequestId::current));
        assert_eq!(on_thread.join().unwrap(), Some(id));
        assert_eq!(RequestId::within_sync(None, RequestId::current), None);
    }
}
