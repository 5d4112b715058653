//! A fixed pool of password-hashing threads behind a bounded queue. Each argon2 computation
//! needs `--argon2-memory-kib` of memory; one per blocking thread let a login flood allocate
//! gigabytes. Here `--hash-workers` threads each own at most one buffer, reused for every job,
//! so hashing memory is at most workers x memory, and a job that finds the queue full is
//! refused at once (503) instead of waiting in memory. A worker allocates its buffer on its
//! first job and gives it back after `--hash-idle-secs` without one, so an idle node holds
//! none (blocks this size are their own mappings, see `tune_allocator` in main.rs, so freeing
//! returns them to the kernel).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use argon2::{Block, Params};
use clap::Args;
use tokio::sync::oneshot;

use super::password::{self, Cost};
use super::AuthError;

#[derive(Debug, Clone, Args)]
pub struct HashConfig {
    /// argon2id memory cost per hash, in KiB; OWASP's floor is 19456 with 2 iterations.
    #[arg(long, env = "CHATNODE_ARGON2_MEMORY_KIB", default_value_t = Cost::default().memory_kib)]
    pub argon2_memory_kib: u32,

    /// argon2id iterations (time cost).
    #[arg(long, env = "CHATNODE_ARGON2_ITERATIONS", default_value_t = Cost::default().iterations)]
    pub argon2_iterations: u32,

    /// Password-hashing threads, each holding one argon2 buffer; default: the number of cores.
    #[arg(long, env = "CHATNODE_HASH_WORKERS")]
    pub hash_workers: Option<usize>,

    /// Password hashes waiting for a worker; beyond it register and login answer 503 with
    /// `Retry-After`. A waiting job holds only its password, so this bounds waiting time
    /// (about this many hash times over the workers), not memory. Default: 16 per worker.
    #[arg(long, env = "CHATNODE_HASH_QUEUE")]
    pub hash_queue: Option<usize>,

    /// Seconds a hashing worker keeps its argon2 buffer without a job before freeing it.
    #[arg(long, env = "CHATNODE_HASH_IDLE_SECS", default_value_t = 30)]
    pub hash_idle_secs: u64,
}

impl Default for HashConfig {
    fn default() -> Self {
        Self {
            argon2_memory_kib: Cost::default().memory_kib,
            argon2_iterations: Cost::default().iterations,
            hash_workers: None,
            hash_queue: None,
            hash_idle_secs: 30,
        }
    }
}

impl HashConfig {
    pub fn cost(&self) -> Cost {
        Cost {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
        }
    }

    fn workers(&self) -> usize {
        self.hash_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1)
    }
}

/// Why a hashing job did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("every password-hashing worker is busy and the queue is full")]
    Busy,
    #[error(transparent)]
    Failed(#[from] AuthError),
}

enum Job {
    Hash(String, oneshot::Sender<Result<String, AuthError>>),
    /// `None`: an unknown email, checked against the stand-in hash.
    Verify(String, Option<String>, oneshot::Sender<bool>),
}

/// The handle async code uses; dropping the last one ends the workers.
pub struct Hasher {
    queue: Sender<Job>,
}

impl Hasher {
    /// Checks the cost against OWASP's floor and starts the workers, each with its memory.
    pub fn start(config: &HashConfig) -> Result<Self, AuthError> {
        let params = config.cost().check()?;
        let workers = config.workers();
        let (queue, jobs) = bounded(config.hash_queue.unwrap_or(16 * workers).max(1));
        let stand_in = Arc::new(password::stand_in(&params));
        let idle = Duration::from_secs(config.hash_idle_secs.max(1));
        for n in 0..workers {
            let (jobs, params, stand_in) = (jobs.clone(), params.clone(), stand_in.clone());
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || work(&jobs, &params, idle, &stand_in))
                .map_err(|e| AuthError::Hash(format!("cannot start a hashing thread: {e}")))?;
        }
        tracing::debug!(
            workers,
            memory_kib = params.m_cost(),
            "password hashing workers"
        );
        Ok(Self { queue })
    }

    /// A PHC hash of `password` with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash(password, reply))?;
        Ok(answer.await.map_err(|_| stopped())??)
    }

    /// Whether `password` matches `stored`; with `None` the same work is done against a
    /// stand-in of the configured cost and the answer is `false`.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Verify(password, stored, reply))?;
        answer.await.map_err(|_| stopped().into())
    }

    fn submit(&self, job: Job) -> Result<(), HashError> {
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => HashError::Busy,
            TrySendError::Disconnected(_) => stopped().into(),
        })
    }
}

fn stopped() -> AuthError {
    AuthError::Hash("the password-hashing workers stopped".into())
}

/// One worker: takes jobs until every [`Hasher`] handle is gone, each in the same memory,
/// which it holds only while jobs keep coming (freed after `idle` without one).
fn work(jobs: &Receiver<Job>, params: &Params, idle: Duration, stand_in: &str) {
    let mut memory: Option<Vec<Block>> = None;
    loop {
        let job = match jobs.recv_timeout(idle) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                memory = None;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let memory = memory.get_or_insert_with(|| password::memory_for(params));
        match job {
            Job::Hash(plain, reply) => {
                let _ = reply.send(password::hash(params, memory, &plain));
            }
            Job::Verify(plain, stored, reply) => {
                let stored = stored.as_deref().unwrap_or(stand_in);
                let _ = reply.send(password::verify(memory, &plain, stored));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_unknown_emails_never_match() {
        let hasher = Hasher::start(&HashConfig {
            hash_workers: Some(1),
            ..HashConfig::default()
        })
        .unwrap();
        let stored = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hasher
            .verify("correct horse".into(), Some(stored.clone()))
            .await
            .unwrap());
        assert!(!hasher.verify("wrong".into(), Some(stored)).await.unwrap());
        assert!(!hasher.verify("correct horse".into(), None).await.unwrap());
    }

    #[test]
    fn a_weak_cost_is_refused_at_start() {
        let weak = HashConfig {
            argon2_memory_kib: 4096,
            ..HashConfig::default()
        };
        let refused = Hasher::start(&weak).err().unwrap().to_string();
        assert!(refused.contains("OWASP"), "{refused}");
    }
}
