//! Where the audit records of reads go. Every read waits until its AuditEvents are durable (so no read goes
//! unrecorded), and the reads that arrive together share one write.
//!
//! On PostgreSQL they are committed to the database, one transaction per batch (group commit). On SQLite
//! they are appended to a journal beside the database and moved into it in the background, a few hundred per
//! transaction, every 100 ms: a commit per batch of reads cost most of a read's time, and each commit empties
//! every reader connection's page cache (docs/benchmarks.md). An append survives `kill -9` as a WAL commit
//! with `synchronous=NORMAL` does; a journal left by a process that stopped is moved in by the next to find it.
//! Searches of the audit trail first [`flush`](AuditSink::flush), so they see every access made before.
//!
//! Audit records never conflict (each has a fresh id), so batching couples no one's outcome to another's.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::access::{self, Action, Actor, Grant};
use crate::error::{Error, Result};
use crate::store::{SharedStore, VersionWrite};

/// The most audit records written together.
const MAX_BATCH: usize = 512;
/// How often journaled records are moved into the database.
const INGEST_EVERY: Duration = Duration::from_millis(100);
/// How often journals of stopped processes are looked for (besides at start and on every flush).
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// A journal file is closed and a new one begun past this size; a closed one is deleted once moved in.
const SEGMENT_BYTES: u64 = 8 << 20;

type Done = oneshot::Sender<Result<(), String>>;

enum Job {
    /// Records to make durable; the sender, if any, hears when they are.
    Record(Vec<VersionWrite>, Option<Done>),
    /// Answers once everything recorded before is in the database.
    Flush(Done),
}

#[derive(Clone)]
pub struct AuditSink {
    jobs: mpsc::Sender<Job>,
}

impl AuditSink {
    /// Starts the writing tasks on the current runtime: a journal where the store has one, else group commits.
    /// They end when the last sink is dropped.
    pub fn start(store: SharedStore) -> AuditSink {
        let (jobs, queue) = mpsc::channel::<Job>(4 * MAX_BATCH);
        match store.audit_journal().map(Path::to_path_buf) {
            Some(dir) => {
                // Room for a few seconds of reads while a transaction moves records in: the appender must not
                // wait on the database, or reads would.
                let (ingest, ingest_queue) = mpsc::channel(4096);
                let journal = dir.clone();
                if let Err(e) = std::thread::Builder::new()
                    .name("audit-journal".into())
                    .spawn(move || append(journal, queue, ingest))
                {
                    // Without the appender every read fails (its record cannot be made durable): say why.
                    tracing::error!(error = %e, "the audit journal thread could not start");
                }
                // SQLite statements run on the thread that asks (src/store/sql/db.rs): moving a batch in takes
                // milliseconds, which would hold up the requests of a runtime thread.
                let ingester = std::thread::Builder::new().name("audit-ingest".into()).spawn(move || {
                    match tokio::runtime::Builder::new_current_thread().enable_time().build() {
                        Ok(runtime) => runtime.block_on(ingest_journal(store, dir, ingest_queue)),
                        Err(e) => tracing::error!(error = %e, "the audit ingest runtime could not start"),
                    }
                });
                if let Err(e) = ingester {
                    tracing::error!(error = %e, "the audit ingest thread could not start");
                }
            }
            None => {
                tokio::spawn(commit_batches(store, queue));
            }
        }
        AuditSink { jobs }
    }

    /// Records `writes` with the next batch and returns when they are durable.
    pub async fn record(&self, writes: Vec<VersionWrite>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Job::Record(writes, Some(done))).await?;
        wait.await.map_err(|_| stopped())?.map_err(Error::Store)
    }

    /// Records `write` with a coming batch without waiting (a refused request's record: the refusal is the
    /// answer either way). Dropped, with a warning, only when the writer is far behind.
    pub fn record_soon(&self, write: VersionWrite) {
        if self.jobs.try_send(Job::Record(vec![write], None)).is_err() {
            tracing::warn!("the audit writer is behind: a refusal was not recorded");
        }
    }

    /// Returns once every record made before, by this process or by one that stopped, is in the database.
    pub async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.send(Job::Flush(done)).await?;
        wait.await.map_err(|_| stopped())?.map_err(Error::Store)
    }

    async fn send(&self, job: Job) -> Result<()> {
        self.jobs.send(job).await.map_err(|_| stopped())
    }
}

fn stopped() -> Error {
    Error::Store("the audit writer has stopped".into())
}

/// The server's own bookkeeping writes: authorize never refuses the system actor.
fn audit_grant() -> Option<Grant> {
    access::authorize(&Actor::system("audit"), Action::Create, "AuditEvent").ok()
}

/// The next jobs: `first` and those queued behind it, up to [`MAX_BATCH`] records.
fn batch_from(first: Job, queue: &mut mpsc::Receiver<Job>) -> Vec<Job> {
    let mut batch = vec![first];
    let mut records = 0;
    while records < MAX_BATCH {
        match queue.try_recv() {
            Ok(job) => {
                if let Job::Record(writes, _) = &job {
                    records += writes.len();
                }
                batch.push(job);
            }
            Err(_) => break,
        }
    }
    batch
}

/// Answers every job of a batch with `outcome`.
fn answer(waiters: Vec<Done>, outcome: &Result<(), String>) {
    for waiter in waiters {
        let _ = waiter.send(outcome.clone()); // a reader that gave up needs no answer
    }
}

/// PostgreSQL: one transaction per batch.
async fn commit_batches(store: SharedStore, mut queue: mpsc::Receiver<Job>) {
    let Some(grant) = audit_grant() else { return };
    while let Some(first) = queue.recv().await {
        let mut writes = Vec::new();
        let mut waiters = Vec::new();
        for job in batch_from(first, &mut queue) {
            match job {
                Job::Record(w, done) => {
                    writes.extend(w);
                    waiters.extend(done);
                }
                Job::Flush(done) => waiters.push(done),
            }
        }
        let outcome = if writes.is_empty() {
            Ok(())
        } else {
            store.write(&grant, &writes).await.map_err(|e| e.to_string())
        };
        answer(waiters, &outcome);
    }
}

/// What the appender hands the ingester, in journal order.
enum Ingest {
    Records(Vec<VersionWrite>),
    /// A full journal file: delete it once everything handed over before is in the database.
    Closed(Segment),
    Flush(Done),
}

/// One journal file of this process, held locked so no other process takes it for a stopped one's.
struct Segment {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Segment {
    /// A new, locked journal file. It is made under a name sweeps ignore and renamed once locked, so a sweep
    /// never takes it before the lock is held.
    fn open(dir: &Path) -> std::io::Result<Segment> {
        std::fs::create_dir_all(dir)?;
        let name = uuid::Uuid::new_v4().to_string();
        let making = dir.join(format!("{name}.new"));
        let file = OpenOptions::new().create_new(true).append(true).open(&making)?;
        file.try_lock().map_err(std::io::Error::other)?;
        let path = dir.join(format!("{name}.log"));
        std::fs::rename(&making, &path)?;
        Ok(Segment { path, file, len: 0 })
    }
}

/// SQLite: appends each batch to the journal, one line (a JSON `VersionWrite`) per record, answers, and hands
/// the records to the ingester. It runs on a thread of its own: a file write can wait on the disk (behind a
/// checkpoint's fsync), and on a runtime thread it held up every request scheduled there.
fn append(dir: PathBuf, mut queue: mpsc::Receiver<Job>, ingest: mpsc::Sender<Ingest>) {
    let mut segment: Option<Segment> = None;
    let mut lines = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        let mut writes = Vec::new();
        let mut waiters = Vec::new();
        let mut flushes = Vec::new();
        lines.clear();
        for job in batch_from(first, &mut queue) {
            match job {
                Job::Record(w, done) => {
                    for write in &w {
                        serde_json::to_writer(&mut lines, write).expect("a VersionWrite serializes");
                        lines.push(b'\n');
                    }
                    writes.extend(w);
                    waiters.extend(done);
                }
                Job::Flush(done) => flushes.push(done),
            }
        }
        let outcome = if lines.is_empty() {
            Ok(None)
        } else {
            write_lines(&dir, &mut segment, &lines).map_err(|e| format!("the audit journal in {}: {e}", dir.display()))
        };
        let (outcome, closed) = match outcome {
            Ok(closed) => (Ok(()), closed),
            Err(e) => (Err(e), None),
        };
        answer(waiters, &outcome);
        let mut handover = Vec::new();
        if outcome.is_ok() && !writes.is_empty() {
            handover.push(Ingest::Records(writes));
        }
        handover.extend(closed.map(Ingest::Closed));
        handover.extend(flushes.into_iter().map(Ingest::Flush));
        for message in handover {
            if ingest.blocking_send(message).is_err() {
                return;
            }
        }
    }
}

/// Appends `lines` to the open journal file (opening one if needed); returns the file it closed, if it
/// filled one.
fn write_lines(dir: &Path, segment: &mut Option<Segment>, lines: &[u8]) -> std::io::Result<Option<Segment>> {
    let current = match segment {
        Some(s) => s,
        None => segment.insert(Segment::open(dir)?),
    };
    if let Err(e) = current.file.write_all(lines) {
        // A failed append (a full disk) may leave part of a line, which the next append would run into: cut it
        // off, or failing that start a new file (this one is then taken over as a stopped process's).
        if current.file.set_len(current.len).is_err() {
            *segment = None;
        }
        return Err(e);
    }
    current.len += lines.len() as u64;
    if current.len < SEGMENT_BYTES {
        return Ok(None);
    }
    Ok(segment.take())
}

/// SQLite: moves journaled records into the database every [`INGEST_EVERY`] (or as soon as a batch is
/// waiting or someone flushes), deletes journal files once moved in, and takes over the journals of processes
/// that stopped.
async fn ingest_journal(store: SharedStore, dir: PathBuf, mut queue: mpsc::Receiver<Ingest>) {
    let Some(grant) = audit_grant() else { return };
    sweep(&store, &grant, &dir).await;
    let mut pending: Vec<VersionWrite> = Vec::new();
    let mut closed: Vec<Segment> = Vec::new();
    let mut tick = tokio::time::interval(INGEST_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweeps = tokio::time::interval(SWEEP_EVERY);
    sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut flushes = Vec::new();
        let due = tokio::select! {
            message = queue.recv() => match message {
                Some(Ingest::Records(writes)) => {
                    pending.extend(writes);
                    pending.len() >= MAX_BATCH
                }
                Some(Ingest::Closed(segment)) => {
                    closed.push(segment);
                    false
                }
                Some(Ingest::Flush(done)) => {
                    flushes.push(done);
                    true
                }
                None => {
                    let _ = move_in(&store, &grant, &mut pending, &mut closed).await;
                    return;
                }
            },
            _ = tick.tick() => true,
            _ = sweeps.tick() => {
                sweep(&store, &grant, &dir).await;
                false
            }
        };
        if !due {
            continue;
        }
        let outcome = move_in(&store, &grant, &mut pending, &mut closed).await;
        if !flushes.is_empty() {
            sweep(&store, &grant, &dir).await;
        }
        answer(flushes, &outcome);
    }
}

/// Writes `pending` into the database, [`MAX_BATCH`] records a transaction, then deletes the `closed` journal
/// files. What could not be written stays pending, to be tried again.
async fn move_in(
    store: &SharedStore,
    grant: &Grant,
    pending: &mut Vec<VersionWrite>,
    closed: &mut Vec<Segment>,
) -> Result<(), String> {
    while !pending.is_empty() {
        let n = pending.len().min(MAX_BATCH);
        if let Err(e) = write_new(store, grant, &pending[..n]).await {
            tracing::warn!(error = %e, "journaled audit records could not be moved into the database; trying again");
            return Err(e.to_string());
        }
        pending.drain(..n);
    }
    for segment in closed.drain(..) {
        if let Err(e) = std::fs::remove_file(&segment.path) {
            tracing::warn!(error = %e, file = %segment.path.display(), "a moved-in audit journal could not be deleted");
        }
    }
    Ok(())
}

/// Writes journaled records into the database, leaving out those already in: moved in before their process
/// stopped (its open file is kept until it fills up), or by a sweep that took over a file while its records
/// were still pending here.
async fn write_new(store: &SharedStore, grant: &Grant, records: &[VersionWrite]) -> Result<()> {
    match store.write(grant, records).await {
        Err(Error::Conflict(_)) => {
            let refs: Vec<(String, String)> = records.iter().map(|w| (w.rtype.clone(), w.id.clone())).collect();
            let present: std::collections::HashSet<String> =
                store.read_many(grant, &refs).await?.into_iter().map(|r| r.id).collect();
            let rest: Vec<VersionWrite> = records.iter().filter(|w| !present.contains(&w.id)).cloned().collect();
            if rest.is_empty() {
                return Ok(());
            }
            store.write(grant, &rest).await
        }
        outcome => outcome,
    }
}

/// Moves in the journals of processes that stopped, and deletes them. A running process holds its journal
/// locked, so it is left alone.
async fn sweep(store: &SharedStore, grant: &Grant, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return; // nothing journaled yet
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let outcome = match path.extension().and_then(|e| e.to_str()) {
            Some("log") => take_over(store, grant, &path).await,
            Some("new") => remove_abandoned(&entry),
            _ => Ok(()),
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, file = %path.display(), "an audit journal left by a stopped process could not be moved in");
        }
    }
}

/// Moves one stopped process's journal into the database and deletes it.
async fn take_over(store: &SharedStore, grant: &Grant, path: &Path) -> Result<()> {
    let io = |e: std::io::Error| Error::Store(format!("{}: {e}", path.display()));
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()), // taken by another process
        Err(e) => return Err(io(e)),
    };
    if file.try_lock().is_err() {
        return Ok(()); // its process is running
    }
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(io)?;
    let mut writes = Vec::new();
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<VersionWrite>(line) {
            Ok(write) => writes.push(write),
            // The process stopped in the middle of this append, so the read it records was never answered.
            Err(e) => {
                tracing::warn!(error = %e, file = %path.display(), "an unfinished audit journal line was skipped")
            }
        }
    }
    for chunk in writes.chunks(MAX_BATCH) {
        write_new(store, grant, chunk).await?;
    }
    std::fs::remove_file(path).map_err(io)
}

/// A journal file whose process stopped between making and locking it (so it is empty).
fn remove_abandoned(entry: &std::fs::DirEntry) -> Result<()> {
    let old = entry
        .metadata()
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(60));
    let unlocked = File::open(entry.path()).is_ok_and(|f| f.try_lock().is_ok());
    if old && unlocked {
        std::fs::remove_file(entry.path()).map_err(|e| Error::Store(e.to_string()))?;
    }
    Ok(())
}
