//! Group commit for the audit records of reads. Every read waits until its AuditEvents are committed (so no
//! read goes unrecorded), but the reads that arrive while one commit runs share the next one: one database
//! transaction per batch instead of one per read. Audit records never conflict (each has a fresh id), so
//! batching couples no one's outcome to another's.

use tokio::sync::{mpsc, oneshot};

use crate::access::{self, Action, Actor};
use crate::error::{Error, Result};
use crate::store::{SharedStore, VersionWrite};

/// The most audit records committed together.
const MAX_BATCH: usize = 512;

type Job = (Vec<VersionWrite>, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
pub struct AuditSink {
    jobs: mpsc::Sender<Job>,
}

impl AuditSink {
    /// Starts the committing task on the current runtime; it ends when the last sink is dropped.
    pub fn start(store: SharedStore) -> AuditSink {
        let (jobs, mut queue) = mpsc::channel::<Job>(4 * MAX_BATCH);
        tokio::spawn(async move {
            // The server's own bookkeeping writes: authorize never refuses the system actor.
            let Ok(grant) = access::authorize(&Actor::system("audit"), Action::Create, "AuditEvent") else {
                return;
            };
            while let Some(first) = queue.recv().await {
                let mut batch = vec![first];
                let mut records = batch[0].0.len();
                while records < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(job) => {
                            records += job.0.len();
                            batch.push(job);
                        }
                        Err(_) => break,
                    }
                }
                let (writes, waiters): (Vec<Vec<VersionWrite>>, Vec<_>) = batch.into_iter().unzip();
                let outcome = store
                    .write(&grant, writes.into_iter().flatten().collect())
                    .await
                    .map_err(|e| e.to_string());
                for waiter in waiters {
                    let _ = waiter.send(outcome.clone()); // a reader that gave up needs no answer
                }
            }
        });
        AuditSink { jobs }
    }

    /// Commits `writes` with the next batch and returns when they are durable.
    pub async fn record(&self, writes: Vec<VersionWrite>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let stopped = || Error::Store("the audit writer has stopped".into());
        self.jobs.send((writes, done)).await.map_err(|_| stopped())?;
        wait.await.map_err(|_| stopped())?.map_err(Error::Store)
    }

    /// Commits `write` with a coming batch without waiting (a refused request's record: the refusal is the
    /// answer either way). Dropped, with a warning, only when the writer is far behind.
    pub fn record_soon(&self, write: VersionWrite) {
        let (done, _) = oneshot::channel();
        if self.jobs.try_send((vec![write], done)).is_err() {
            tracing::warn!("the audit writer is behind: a refusal was not recorded");
        }
    }
}
