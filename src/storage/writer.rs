//! The SQLite writer: one thread that owns the connection every frequent
//! write goes through (accepts, delivery records, queue claims and leases).
//!
//! Through the driver, every statement was a message to the driver's thread
//! and every result a message back, each with a wake-up on both sides; with
//! two cores busy, a two-query transaction waited 2–3 ms for scheduling while
//! SQLite itself needed a fraction of that, and every accept and delivery
//! record queued behind it. Here a piece of work is one closure sent to the
//! thread and one answer back, and statements are prepared once and kept.
//!
//! The thread runs everything that waited while it was busy as one
//! transaction, each piece of work inside a savepoint of its own (unless it
//! is alone, when the transaction is its savepoint): a piece
//! that fails, panics or decides to keep nothing has its writes undone
//! without touching the others', and every piece is answered once the
//! `COMMIT` returned (or with the error, when it failed). Accepts and
//! delivery records touch the same pages (the message an accept stored is
//! the one a record updates, the events table's last page), so one commit
//! writes them to the log once.
//!
//! Accepts come as gathered pieces ([`Writer::gather`]): every one waiting
//! runs in one savepoint (none when nothing else shares the transaction),
//! not one each, and its caller hears once the commit is durable, from the
//! thread that flushed it, not merely committed. So an accept costs no
//! sub-journal copies of the pages it changes, and its caller's task is
//! woken once instead of at the commit and again at the flush.
//!
//! The rare writes that stay on the driver's writer connection (an accept
//! batch decided job by job) take [`Writer::turn`] first, which the thread
//! holds while it runs a transaction, so the two connections never wait for
//! each other in SQLite's busy handler, which sleeps in steps of milliseconds.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, mpsc};

use rusqlite::ToSql;
use rusqlite::types::{ToSqlOutput, Value as Sql, ValueRef};
use sea_orm::{Statement, Value};

use super::checkpoint::Wal;
use super::live::Publisher;
use crate::domain::{Error, Result};

/// Prepared statements kept per connection. Multi-row inserts differ by
/// their row count, so a busy writer sees a few dozen distinct statements.
const KEPT_STATEMENTS: usize = 256;

/// The most pieces of work one transaction carries.
const MAX_GROUP: usize = 64;

/// What a piece of work decided about its writes.
pub(super) enum Writes<R> {
    /// Commit them; the caller gets `R` once the transaction committed.
    Keep(R),
    /// Undo them; the caller gets `R` at once, whatever becomes of the
    /// transaction.
    Undo(R),
}

/// Tells a caller how its work ended, given how the transaction did (the
/// cause, when it failed).
type Answer = Box<dyn FnOnce(std::result::Result<(), &str>) + Send>;

/// A piece of work: runs inside its savepoint and says whether its writes
/// stay, with the answer to give once the transaction ended. Given the
/// cause instead of the session when its transaction could not begin.
type Job = Box<dyn FnOnce(std::result::Result<&mut Session, &str>) -> (bool, Answer) + Send>;

/// A gathered piece of work (see [`Writer::gather`]): whether its writes
/// may stay.
type Gathered = Box<dyn FnOnce(&mut Session) -> Result<bool> + Send>;

/// Where a gathered piece hears what became of it.
type Reply = tokio::sync::oneshot::Sender<Result<bool>>;

struct Gather {
    work: Gathered,
    /// What it weighs against [`MAX_GATHERED`].
    weight: usize,
    reply: Reply,
}

/// The most weight (messages, for accepts) of the gathered pieces of one
/// transaction; a heavier piece runs alone.
const MAX_GATHERED: usize = 512;

enum Message {
    Run(Job),
    Gather(Gather),
    Close(tokio::sync::oneshot::Sender<()>),
}

/// The handle to the writer thread; the thread ends, closing its
/// connection, when the last handle is dropped or [`Writer::close`] is called.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Message>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Writer {
    /// Opens the database file at `path` and starts the thread. Its
    /// commits do not flush the log (`synchronous=NORMAL`): what it commits
    /// is acknowledged once the flusher has (see `flush`).
    pub(super) fn start(
        path: &Path,
        wal: Arc<Wal>,
        publisher: Option<Publisher>,
    ) -> Result<Writer> {
        let bound = wal.bound();
        let conn = super::wal_writes::open(path)
            .and_then(|conn| set_up(conn, bound))
            .map_err(|e| {
                Error::StorageUnavailable(
                    anyhow::Error::new(e).context("opening the SQLite writer"),
                )
            })?;
        let (jobs, queue) = mpsc::channel();
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let session = Session {
            conn,
            wal,
            publisher,
        };
        let held = turn.clone();
        std::thread::Builder::new()
            .name("posthorn-writer".into())
            .spawn(move || serve(session, queue, held))
            .map_err(|e| {
                Error::StorageUnavailable(
                    anyhow::Error::new(e).context("starting the SQLite writer thread"),
                )
            })?;
        Ok(Writer { jobs, turn })
    }

    /// Sends `work` to the writer thread now; the future resolves with
    /// what it returned once its transaction committed (a `Writes::Undo`
    /// at once), or with the error that undid its writes.
    pub(super) fn transaction<R, W>(&self, work: W) -> impl Future<Output = Result<R>> + use<R, W>
    where
        R: Send + 'static,
        W: FnOnce(&mut Session) -> Result<Writes<R>> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |session| {
            let session = match session {
                Ok(session) => session,
                Err(cause) => {
                    let error = again(cause);
                    let answer: Answer = Box::new(move |_| {
                        let _ = answer.send(Err(error));
                    });
                    return (false, answer);
                }
            };
            let (keep, result) = match work(session) {
                Ok(Writes::Keep(value)) => (true, Ok(value)),
                Ok(Writes::Undo(value)) => {
                    let answer: Answer = Box::new(move |_| {
                        let _ = answer.send(Ok(value));
                    });
                    return (false, answer);
                }
                Err(error) => (false, Err(error)),
            };
            let answer: Answer = Box::new(move |committed| {
                let _ = answer.send(match (result, committed) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Ok(_), Err(cause)) => Err(again(cause)),
                    (Err(error), _) => Err(error),
                });
            });
            (keep, answer)
        });
        let sent = self.jobs.send(Message::Run(job)).is_ok();
        answer_of(sent, answered, || {
            Error::Internal(anyhow::anyhow!(
                "the SQLite writer failed while running a transaction"
            ))
        })
    }

    /// Sends `work` to the writer thread, to run with the other gathered
    /// pieces waiting (up to [`MAX_GATHERED`] of `weight`), one after the
    /// other in one savepoint. They stay or go together: when one keeps
    /// nothing (`Ok(false)`), fails or panics, every one is undone and
    /// answered `false`, to be decided alone (the failed one hears its
    /// error). Resolves with `true` once the transaction is durable, from
    /// the thread that flushed it.
    pub(super) fn gather<W>(
        &self,
        weight: usize,
        work: W,
    ) -> impl Future<Output = Result<bool>> + use<W>
    where
        W: FnOnce(&mut Session) -> Result<bool> + Send + 'static,
    {
        let (reply, answered) = tokio::sync::oneshot::channel();
        let sent = self
            .jobs
            .send(Message::Gather(Gather {
                work: Box::new(work),
                weight,
                reply,
            }))
            .is_ok();
        // Dropped unanswered only when the flush failed (see
        // `Flusher::when_durable`): nothing is acknowledged then.
        answer_of(sent, answered, || {
            Error::StorageUnavailable(anyhow::anyhow!(
                "the SQLite transaction could not be made durable"
            ))
        })
    }

    /// Runs `read` on the writer's connection, whose page cache holds what
    /// was written last; nothing it writes is kept. It sees what the
    /// thread committed, and what runs before it in its transaction.
    pub(super) fn read<R, W>(&self, read: W) -> impl Future<Output = Result<R>> + use<R, W>
    where
        R: Send + 'static,
        W: FnOnce(&mut Session) -> Result<R> + Send + 'static,
    {
        self.transaction(move |session| read(session).map(Writes::Undo))
    }

    /// Runs `statements` in order, keeping their writes, and returns every
    /// row they return.
    pub(super) fn write(
        &self,
        statements: Vec<Statement>,
    ) -> impl Future<Output = Result<Vec<Row>>> + use<> {
        self.transaction(move |session| session.fetch(&statements).map(Writes::Keep))
    }

    /// Waits until the thread is between transactions and keeps it there
    /// while the guard lives.
    pub(super) async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// Ends the thread and closes its connection once the work sent before
    /// has run.
    pub(super) async fn close(&self) {
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.jobs.send(Message::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

fn closed() -> Error {
    Error::StorageUnavailable(anyhow::anyhow!("the SQLite writer is closed"))
}

/// The answer to work handed to the thread (`sent` whether it was):
/// `lost` says what an answer dropped unsent means.
async fn answer_of<T>(
    sent: bool,
    answered: tokio::sync::oneshot::Receiver<Result<T>>,
    lost: impl FnOnce() -> Error,
) -> Result<T> {
    if !sent {
        return Err(closed());
    }
    answered.await.map_err(|_| lost())?
}

/// What a piece of work that panicked is told, and the log says.
const PANICKED: &str = "a piece of work on the SQLite writer panicked";

/// Tells each gathered piece of `replies` that its transaction failed.
fn fail_all(replies: impl IntoIterator<Item = Reply>, cause: &str) {
    for reply in replies {
        let _ = reply.send(Err(again(cause)));
    }
}

/// Runs a piece of work, catching a panic (logged; `None`).
fn unwound<T>(run: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(AssertUnwindSafe(run))
        .inspect_err(|_| tracing::error!("{PANICKED}"))
        .ok()
}

/// The failure of a whole transaction, once for each piece of work in it:
/// retryable, with its cause.
fn again(cause: &str) -> Error {
    Error::StorageUnavailable(anyhow::anyhow!("the SQLite transaction failed: {cause}"))
}

/// Opens a rusqlite connection to the database file at `path` with the
/// writer's settings, through SQLite's default VFS: the checkpoint thread's.
/// The writer's own goes through `wal_writes`, which writes each commit's
/// log frames in one call.
pub(super) fn open(path: &Path, log_bound: i64) -> rusqlite::Result<rusqlite::Connection> {
    set_up(rusqlite::Connection::open(path)?, log_bound)
}

/// Applies the writer's settings to `conn`; a log file started over is cut
/// back to `log_bound` bytes when it is longer.
fn set_up(conn: rusqlite::Connection, log_bound: i64) -> rusqlite::Result<rusqlite::Connection> {
    conn.busy_timeout(super::LOCK_WAIT)?;
    // The same settings as the pool's connections (see `options`).
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA mmap_size = 0; PRAGMA cache_size = -16384; PRAGMA temp_store = memory; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {log_bound};"
    ))?;
    conn.set_prepared_statement_cache_capacity(KEPT_STATEMENTS);
    Ok(conn)
}

/// The thread: takes whatever work is waiting (up to [`MAX_GROUP`] pieces,
/// and [`MAX_GATHERED`] of gathered weight) and runs it as one transaction,
/// until closed.
fn serve(mut session: Session, queue: mpsc::Receiver<Message>, turn: Arc<tokio::sync::Mutex<()>>) {
    let mut held = None;
    loop {
        let Some(first) = held.take().or_else(|| queue.recv().ok()) else {
            return;
        };
        let (mut group, mut gathered, mut weight) = (Vec::new(), Vec::new(), 0);
        let mut close = None;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Run(job) => group.push(job),
                Message::Gather(piece) => {
                    if !gathered.is_empty() && weight + piece.weight > MAX_GATHERED {
                        held = Some(Message::Gather(piece));
                        break;
                    }
                    weight += piece.weight;
                    gathered.push(piece);
                }
                Message::Close(done) => {
                    close = Some(done);
                    break;
                }
            }
            if group.len() + gathered.len() < MAX_GROUP {
                next = queue.try_recv().ok();
            }
        }
        if !group.is_empty() || !gathered.is_empty() {
            let _turn = turn.blocking_lock();
            session.run_group(gathered, group);
        }
        if let Some(done) = close {
            // Nothing is taken after this: later callers hear at once
            // that the writer is closed.
            drop(queue);
            drop(session);
            let _ = done.send(());
            return;
        }
    }
}

/// The writer's connection, as a piece of work sees it.
pub(super) struct Session {
    conn: rusqlite::Connection,
    wal: Arc<Wal>,
    /// Hands what each commit wrote to the watchers once durable (see
    /// `live`).
    publisher: Option<Publisher>,
}

impl Session {
    /// Runs `gathered` and `group` as one transaction, the gathered pieces
    /// first, in one savepoint, and each piece of `group` in a savepoint of
    /// its own (a piece alone in the transaction needs none), and answers
    /// every piece once it ended (the gathered ones once it is durable).
    fn run_group(&mut self, gathered: Vec<Gather>, group: Vec<Job>) {
        if let Err(error) = self.begin() {
            let cause = error.chain();
            fail_all(gathered.into_iter().map(|piece| piece.reply), &cause);
            for job in group {
                // The piece never runs; its caller hears why.
                let (_, answer) = job(Err(&cause));
                answer(Err(&cause));
            }
            return;
        }
        let replies = if gathered.is_empty() {
            Vec::new()
        } else {
            match self.run_gathered(gathered, group.is_empty()) {
                Some(replies) => replies,
                None => {
                    // The transaction was lost; its gathered pieces heard.
                    self.roll_back();
                    if !group.is_empty() {
                        self.run_group(Vec::new(), group);
                    }
                    return;
                }
            }
        };
        let mut jobs = group.into_iter();
        let (answers, kept) = if jobs.len() == 0 {
            (Vec::new(), false)
        } else if jobs.len() == 1 && replies.is_empty() {
            // Alone, without a savepoint: inside one SQLite copies every
            // page the piece changes first into a sub-journal, in case the
            // savepoint is undone; the transaction is undone instead.
            let (keep, answer) = self.run_piece(jobs.next().expect("one piece"));
            (answer.into_iter().collect(), keep)
        } else {
            match self.run_in_savepoints(jobs) {
                Ok(ran) => ran,
                Err((cause, rest)) => {
                    fail_all(replies, &cause);
                    if !rest.is_empty() {
                        self.run_group(Vec::new(), rest);
                    }
                    return;
                }
            }
        };
        let ended = self.end(kept || !replies.is_empty());
        for answer in answers {
            answer(ended.as_ref().map(|_| ()).map_err(String::as_str));
        }
        self.reply_durable(replies, ended);
    }

    /// Runs the gathered pieces one after the other, in a savepoint unless
    /// they are `alone` in the transaction (which is undone instead): the
    /// replies to give once the transaction is durable, none when they were
    /// undone (each was answered). `None` when the transaction was lost
    /// (each was answered with the failure).
    fn run_gathered(&mut self, pieces: Vec<Gather>, alone: bool) -> Option<Vec<Reply>> {
        if !alone && let Err(error) = self.conn.execute_batch("SAVEPOINT gathered") {
            fail_all(
                pieces.into_iter().map(|piece| piece.reply),
                &sqlite_error(error).chain(),
            );
            return None;
        }
        let mut replies = Vec::with_capacity(pieces.len());
        // The piece that kept nothing, with its error when it failed.
        let mut refused: Option<(usize, Option<Error>)> = None;
        for (i, Gather { work, reply, .. }) in pieces.into_iter().enumerate() {
            if refused.is_none() {
                refused = match unwound(|| work(self)) {
                    Some(Ok(true)) => None,
                    Some(Ok(false)) => Some((i, None)),
                    Some(Err(error)) => Some((i, Some(error))),
                    None => Some((i, Some(Error::Internal(anyhow::anyhow!(PANICKED))))),
                };
            }
            replies.push(reply);
        }
        let end = match (&refused, alone) {
            _ if self.conn.is_autocommit() => Err(Error::StorageUnavailable(anyhow::anyhow!(
                "SQLite rolled the writer's transaction back"
            ))),
            (None, true) => Ok(()),
            (None, false) => self
                .conn
                .execute_batch("RELEASE gathered")
                .map_err(sqlite_error),
            (Some(_), true) => {
                self.roll_back();
                Ok(())
            }
            (Some(_), false) => self
                .conn
                .execute_batch("ROLLBACK TO gathered; RELEASE gathered")
                .map_err(sqlite_error),
        };
        // Why the transaction was lost, if it was.
        let lost = end.err().map(Error::chain);
        if refused.is_none() && lost.is_none() {
            return Some(replies);
        }
        for (i, reply) in replies.into_iter().enumerate() {
            let own = match &mut refused {
                Some((at, failed)) if *at == i => failed.take(),
                _ => None,
            };
            let _ = reply.send(match (own, &lost) {
                (Some(error), _) => Err(error),
                (None, Some(cause)) => Err(again(cause)),
                (None, None) => Ok(false),
            });
        }
        lost.is_none().then(Vec::new)
    }

    /// Answers the gathered pieces of a transaction that `ended` so: once
    /// it is durable, from the thread that flushed it, when it committed.
    fn reply_durable(&self, replies: Vec<Reply>, ended: std::result::Result<(), String>) {
        if replies.is_empty() {
            return;
        }
        if let Err(cause) = ended {
            fail_all(replies, &cause);
            return;
        }
        let answer = move || {
            for reply in replies {
                let _ = reply.send(Ok(true));
            }
        };
        match &self.publisher {
            Some(publisher) => publisher.flusher().when_durable(answer),
            // No flusher (the writer's own tests): committed is all there is.
            None => answer(),
        }
    }

    /// Runs each piece of `jobs` in a savepoint of its own: their answers,
    /// and whether any kept its writes. When the transaction was lost,
    /// everything in it so far was answered with the failure, and the cause
    /// comes back with the pieces that did not run.
    fn run_in_savepoints(
        &mut self,
        mut jobs: std::vec::IntoIter<Job>,
    ) -> std::result::Result<(Vec<Answer>, bool), (String, Vec<Job>)> {
        let mut answers: Vec<Answer> = Vec::with_capacity(jobs.len());
        let mut kept = false;
        while let Some(job) = jobs.next() {
            match self.run_one_job(job) {
                Ok((keep, answer)) => {
                    kept |= keep;
                    answers.push(answer);
                }
                Err((answer, error)) => {
                    // The transaction is gone (SQLite rolled it back, or the
                    // savepoint could not be ended): everything in it so
                    // far failed, and the rest runs in a new one.
                    answers.extend(answer);
                    let cause = error.chain();
                    for answer in answers {
                        answer(Err(&cause));
                    }
                    self.roll_back();
                    return Err((cause, jobs.collect()));
                }
            }
        }
        Ok((answers, kept))
    }

    /// Runs a piece of work: whether its writes stay, and its answer, which
    /// a piece that panicked took with it (its caller hears of a failure).
    fn run_piece(&mut self, job: Job) -> (bool, Option<Answer>) {
        match unwound(|| job(Ok(self))) {
            Some((keep, answer)) => (keep, Some(answer)),
            None => (false, None),
        }
    }

    /// Ends the transaction: with `COMMIT` when a piece kept its writes,
    /// handing them to the watchers, else with `ROLLBACK`, there being
    /// nothing to keep. The cause when the COMMIT failed (nothing of the
    /// transaction is kept then).
    fn end(&mut self, kept: bool) -> std::result::Result<(), String> {
        if !kept {
            self.roll_back();
            return Ok(());
        }
        let committed = self
            .conn
            .execute_batch("COMMIT")
            .map_err(|e| sqlite_error(e).chain());
        match (&committed, &mut self.publisher) {
            (Err(_), _) => self.roll_back(),
            (Ok(()), Some(publisher)) => publisher.committed(&self.conn),
            (Ok(()), None) => {}
        }
        committed
    }

    /// Runs one piece of work in its savepoint; says whether its writes
    /// stay. An error means the whole transaction is lost, with the piece's
    /// answer when it has one.
    fn run_one_job(
        &mut self,
        job: Job,
    ) -> std::result::Result<(bool, Answer), (Option<Answer>, Error)> {
        self.conn
            .execute_batch("SAVEPOINT work")
            .map_err(|e| (None, sqlite_error(e)))?;
        let (keep, answer) = self.run_piece(job);
        let end = if keep {
            "RELEASE work"
        } else {
            "ROLLBACK TO work; RELEASE work"
        };
        if self.conn.is_autocommit() {
            return Err((
                answer,
                Error::StorageUnavailable(anyhow::anyhow!(
                    "SQLite rolled the writer's transaction back"
                )),
            ));
        }
        match self.conn.execute_batch(end) {
            Ok(()) => Ok((keep, answer.unwrap_or_else(|| Box::new(|_| {})))),
            Err(error) => Err((answer, sqlite_error(error))),
        }
    }

    /// Ends a transaction that failed; nothing of it is kept.
    fn roll_back(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(error) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::error!(%error, "rolling back on the SQLite writer failed");
        }
    }

    /// Begins the group's transaction, after the checkpoint that lets the
    /// write-ahead log start over when one is due (see `Wal`).
    fn begin(&mut self) -> Result<()> {
        if self.wal.restart_due() {
            self.conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .map_err(sqlite_error)?;
        }
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(sqlite_error)
    }

    /// Runs the query `statement` and returns its rows as `read` makes
    /// them.
    pub(super) fn query<T>(
        &mut self,
        statement: &Statement,
        mut read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let mut prepared = self
            .conn
            .prepare_cached(&statement.sql)
            .map_err(sqlite_error)?;
        if let Some(values) = &statement.values {
            for (i, value) in values.0.iter().enumerate() {
                prepared
                    .raw_bind_parameter(i + 1, Bind(value))
                    .map_err(sqlite_error)?;
            }
        }
        let mut rows = prepared.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            out.push(read(row).map_err(sqlite_error)?);
        }
        Ok(out)
    }

    /// Runs `statements` in order and returns every row they return.
    pub(super) fn fetch(&mut self, statements: &[Statement]) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        for statement in statements {
            rows.extend(self.query(statement, |row| {
                (0..row.as_ref().column_count())
                    .map(|i| row.get::<_, Sql>(i))
                    .collect::<rusqlite::Result<_>>()
                    .map(Row)
            })?);
        }
        Ok(rows)
    }
}

/// A row a statement returned.
#[derive(Debug)]
pub(super) struct Row(Vec<Sql>);

impl Row {
    fn column(&self, i: usize) -> Result<&Sql> {
        self.0.get(i).ok_or_else(|| {
            Error::Internal(anyhow::anyhow!("a writer query returned no column {i}"))
        })
    }

    /// Column `i` as an integer.
    pub(super) fn int(&self, i: usize) -> Result<i64> {
        match self.column(i)? {
            Sql::Integer(n) => Ok(*n),
            other => Err(mistyped(i, "an integer", other)),
        }
    }

    /// Column `i` as an integer or NULL.
    pub(super) fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.column(i)? {
            Sql::Null => Ok(None),
            Sql::Integer(n) => Ok(Some(*n)),
            other => Err(mistyped(i, "an integer or NULL", other)),
        }
    }

    /// Column `i` as text.
    pub(super) fn text(&self, i: usize) -> Result<String> {
        match self.column(i)? {
            Sql::Text(s) => Ok(s.clone()),
            other => Err(mistyped(i, "text", other)),
        }
    }
}

fn mistyped(i: usize, wanted: &str, found: &Sql) -> Error {
    Error::Internal(anyhow::anyhow!(
        "column {i} of a writer query: expected {wanted}, found {:?}",
        found.data_type()
    ))
}

/// A SeaORM value bound as SQLite stores it, as the driver binds it:
/// booleans and integers as integers, text and blobs borrowed.
struct Bind<'a>(&'a Value);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        fn int(n: Option<i64>) -> ToSqlOutput<'static> {
            ToSqlOutput::Owned(n.map_or(Sql::Null, Sql::Integer))
        }
        fn real(n: Option<f64>) -> ToSqlOutput<'static> {
            ToSqlOutput::Owned(n.map_or(Sql::Null, Sql::Real))
        }
        Ok(match self.0 {
            Value::Bool(v) => int(v.map(i64::from)),
            Value::TinyInt(v) => int(v.map(i64::from)),
            Value::SmallInt(v) => int(v.map(i64::from)),
            Value::Int(v) => int(v.map(i64::from)),
            Value::BigInt(v) => int(*v),
            Value::TinyUnsigned(v) => int(v.map(i64::from)),
            Value::SmallUnsigned(v) => int(v.map(i64::from)),
            Value::Unsigned(v) => int(v.map(i64::from)),
            Value::BigUnsigned(v) => int(v
                .map(i64::try_from)
                .transpose()
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?),
            Value::Float(v) => real(v.map(f64::from)),
            Value::Double(v) => real(*v),
            Value::String(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Char(Some(c)) => ToSqlOutput::Owned(Sql::Text(c.to_string())),
            Value::Bytes(Some(b)) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Value::Json(Some(j)) => ToSqlOutput::Owned(Sql::Text(j.to_string())),
            Value::String(None) | Value::Char(None) | Value::Bytes(None) | Value::Json(None) => {
                ToSqlOutput::Owned(Sql::Null)
            }
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("the SQLite writer binds no {other:?}").into(),
                ));
            }
        })
    }
}

/// Classifies a SQLite error as the pool's are (`db_error`): what a retry
/// can outlast ([`super::sqlite_transient`]: busy, full, unreadable or
/// unopenable) is STORAGE_UNAVAILABLE; everything else, constraint
/// failures included, internal.
pub(super) fn sqlite_error(error: rusqlite::Error) -> Error {
    let unavailable = error
        .sqlite_error()
        .is_some_and(|e| super::sqlite_transient(e.extended_code));
    let error = anyhow::Error::new(error).context("the SQLite writer");
    if unavailable {
        Error::StorageUnavailable(error)
    } else {
        Error::Internal(error)
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::DatabaseBackend;

    use super::*;

    fn writer() -> (tempfile::TempDir, Arc<Writer>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let writer = Writer::start(&dir.path().join("w.db"), Arc::new(Wal::new(64 << 20)), None)
            .expect("writer");
        (dir, Arc::new(writer))
    }

    fn sql(sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(DatabaseBackend::Sqlite, sql, values)
    }

    fn insert(n: i64) -> Statement {
        sql("INSERT INTO t (n) VALUES (?)", vec![n.into()])
    }

    /// The values of `n` in `t`, in order.
    async fn stored(writer: &Writer) -> Vec<i64> {
        let rows = writer
            .write(vec![sql("SELECT n FROM t ORDER BY n", vec![])])
            .await
            .expect("read");
        rows.iter().map(|r| r.int(0).expect("an integer")).collect()
    }

    async fn create(writer: &Writer) {
        writer
            .write(vec![
                sql(
                    "CREATE TABLE t (b INTEGER, n INTEGER, x TEXT, y BLOB, r REAL, \
                     p INTEGER REFERENCES t2 (id) DEFERRABLE INITIALLY DEFERRED)",
                    vec![],
                ),
                sql("CREATE TABLE t2 (id INTEGER PRIMARY KEY)", vec![]),
            ])
            .await
            .expect("tables");
    }

    /// Blocks the thread until the returned sender is used, so whatever is
    /// sent meanwhile runs as one transaction after it.
    async fn hold(
        writer: &Writer,
    ) -> (
        std::sync::mpsc::Sender<()>,
        impl Future<Output = Result<()>>,
    ) {
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let held = writer.transaction(move |_| {
            started_tx.send(()).expect("started");
            released.recv().expect("released");
            Ok(Writes::Keep(()))
        });
        tokio::task::spawn_blocking(move || started.recv().expect("the hold started"))
            .await
            .expect("joined");
        (release, held)
    }

    #[tokio::test]
    async fn values_are_stored_as_the_driver_stores_them_and_read_back() {
        let (_dir, writer) = writer();
        create(&writer).await;
        let rows = writer
            .write(vec![sql(
                "INSERT INTO t (b, n, x, y, r) VALUES (?, ?, ?, ?, ?) \
                 RETURNING b, n, x, typeof(y), r, typeof(b)",
                vec![
                    true.into(),
                    u32::MAX.into(),
                    "zwölf".into(),
                    vec![0u8, 1, 2].into(),
                    1.5f64.into(),
                ],
            )])
            .await
            .expect("insert");
        let row = &rows[0];
        assert_eq!(row.int(0).unwrap(), 1, "true is 1");
        assert_eq!(row.int(1).unwrap(), i64::from(u32::MAX));
        assert_eq!(row.text(2).unwrap(), "zwölf");
        assert_eq!(row.text(3).unwrap(), "blob");
        assert_eq!(row.text(5).unwrap(), "integer");
        let Err(Error::Internal(error)) = row.int(2) else {
            panic!("text is not an integer");
        };
        assert!(error.to_string().contains("column 2"), "{error}");
        let missing: Option<String> = None;
        let rows = writer
            .write(vec![sql(
                "INSERT INTO t (n, x) VALUES (?, ?) RETURNING n, x",
                vec![Option::<i64>::None.into(), missing.into()],
            )])
            .await
            .expect("nulls");
        assert_eq!(rows[0].opt_int(0).unwrap(), None);
    }

    #[tokio::test]
    async fn a_value_sqlite_cannot_hold_is_refused_and_nothing_is_written() {
        let (_dir, writer) = writer();
        create(&writer).await;
        let result = writer
            .write(vec![
                insert(1),
                sql("INSERT INTO t (n) VALUES (?)", vec![u64::MAX.into()]),
            ])
            .await;
        assert!(matches!(result, Err(Error::Internal(_))), "{result:?}");
        assert!(stored(&writer).await.is_empty());
    }

    #[tokio::test]
    async fn work_sharing_a_transaction_keeps_or_loses_its_writes_on_its_own() {
        let (_dir, writer) = writer();
        create(&writer).await;
        let (release, held) = hold(&writer).await;
        let kept = writer.write(vec![insert(1)]);
        let failed = writer.transaction(|s| {
            s.fetch(&[insert(2)])?;
            Err::<Writes<()>, _>(Error::Internal(anyhow::anyhow!("gave up")))
        });
        let panicked = writer.transaction(|s| -> Result<Writes<()>> {
            s.fetch(&[insert(3)])?;
            panic!("a bug in a piece of work");
        });
        let undone = writer.transaction(|s| {
            s.fetch(&[insert(4)])?;
            Ok(Writes::Undo("nothing fit"))
        });
        let also_kept = writer.write(vec![insert(5)]);
        release.send(()).expect("release");
        held.await.expect("the hold");
        kept.await.expect("kept");
        assert!(matches!(failed.await, Err(Error::Internal(_))));
        assert!(matches!(panicked.await, Err(Error::Internal(_))));
        assert_eq!(undone.await.expect("undone"), "nothing fit");
        also_kept.await.expect("also kept");
        assert_eq!(stored(&writer).await, [1, 5]);
    }

    #[tokio::test]
    async fn work_alone_in_its_transaction_keeps_or_loses_its_writes_the_same_way() {
        let (_dir, writer) = writer();
        create(&writer).await;
        // Each awaited before the next is sent: each runs alone.
        writer.write(vec![insert(1)]).await.expect("kept");
        let failed = writer
            .transaction(|s| {
                s.fetch(&[insert(2)])?;
                Err::<Writes<()>, _>(Error::Internal(anyhow::anyhow!("gave up")))
            })
            .await;
        assert!(matches!(failed, Err(Error::Internal(_))), "{failed:?}");
        let panicked = writer
            .transaction(|s| -> Result<Writes<()>> {
                s.fetch(&[insert(3)])?;
                panic!("a bug in a piece of work");
            })
            .await;
        assert!(matches!(panicked, Err(Error::Internal(_))), "{panicked:?}");
        let undone = writer
            .transaction(|s| {
                s.fetch(&[insert(4)])?;
                Ok(Writes::Undo("nothing fit"))
            })
            .await;
        assert_eq!(undone.expect("undone"), "nothing fit");
        let orphan = writer
            .write(vec![
                insert(5),
                sql("INSERT INTO t (n, p) VALUES (6, 99)", vec![]),
            ])
            .await;
        let Err(Error::StorageUnavailable(error)) = orphan else {
            panic!("a commit that fails is retryable: {orphan:?}");
        };
        assert!(error.to_string().contains("FOREIGN KEY"), "{error}");
        writer
            .write(vec![insert(7)])
            .await
            .expect("the writer goes on");
        assert_eq!(stored(&writer).await, [1, 7]);
    }

    /// A gathered piece that inserts `n` and says `fits`.
    fn gathered(writer: &Writer, n: i64, fits: bool) -> impl Future<Output = Result<bool>> + use<> {
        writer.gather(1, move |s| {
            s.fetch(&[insert(n)])?;
            Ok(fits)
        })
    }

    #[tokio::test]
    async fn gathered_pieces_stay_together_beside_work_that_keeps_or_loses_its_own() {
        let (_dir, writer) = writer();
        create(&writer).await;
        let (release, held) = hold(&writer).await;
        let first = gathered(&writer, 1, true);
        let undone = writer.transaction(|s| {
            s.fetch(&[insert(2)])?;
            Ok(Writes::Undo(()))
        });
        let second = gathered(&writer, 3, true);
        let kept = writer.write(vec![insert(4)]);
        release.send(()).expect("release");
        held.await.expect("the hold");
        assert!(first.await.expect("first"), "kept and durable");
        assert!(second.await.expect("second"), "kept and durable");
        undone.await.expect("undone");
        kept.await.expect("kept");
        assert_eq!(stored(&writer).await, [1, 3, 4]);
    }

    #[tokio::test]
    async fn one_gathered_piece_that_keeps_nothing_undoes_them_all_and_nothing_else() {
        let (_dir, writer) = writer();
        create(&writer).await;
        let (release, held) = hold(&writer).await;
        let before = gathered(&writer, 1, true);
        let refuses = gathered(&writer, 2, false);
        let after = gathered(&writer, 3, true);
        let kept = writer.write(vec![insert(4)]);
        release.send(()).expect("release");
        held.await.expect("the hold");
        for (name, piece) in [("before", before), ("refuses", refuses), ("after", after)] {
            assert!(!piece.await.expect(name), "{name}: undone, to decide alone");
        }
        kept.await.expect("work beside them keeps its writes");
        assert_eq!(stored(&writer).await, [4]);

        // Alone in their transaction, they are undone with it.
        let (release, held) = hold(&writer).await;
        let alone = [gathered(&writer, 5, true), gathered(&writer, 6, false)];
        release.send(()).expect("release");
        held.await.expect("the hold");
        for piece in alone {
            assert!(!piece.await.expect("alone"));
        }
        assert_eq!(stored(&writer).await, [4]);
    }

    #[tokio::test]
    async fn a_gathered_piece_that_fails_hears_its_error_and_the_others_decide_alone() {
        let (_dir, writer) = writer();
        create(&writer).await;
        let (release, held) = hold(&writer).await;
        let before = gathered(&writer, 1, true);
        let failed = writer.gather(1, |s| {
            s.fetch(&[sql("INSERT INTO nowhere (n) VALUES (2)", vec![])])?;
            Ok(true)
        });
        let panicked = writer.gather(1, |_| -> Result<bool> {
            panic!("a bug in a piece of work")
        });
        release.send(()).expect("release");
        held.await.expect("the hold");
        assert!(!before.await.expect("before"), "undone, to decide alone");
        let error = failed.await.expect_err("its own error").chain();
        assert!(error.contains("no such table"), "{error}");
        assert!(
            !panicked.await.expect("not run after the failure"),
            "undone without running"
        );
        let alone = writer
            .gather(1, |_| -> Result<bool> {
                panic!("a bug in a piece of work")
            })
            .await;
        assert!(matches!(alone, Err(Error::Internal(_))), "{alone:?}");
        assert!(
            gathered(&writer, 3, true)
                .await
                .expect("the writer goes on")
        );
        assert_eq!(stored(&writer).await, [3]);
    }

    #[tokio::test]
    async fn gathered_pieces_share_a_transaction_up_to_their_weight() {
        let (_dir, writer) = writer();
        create(&writer).await;
        let (release, held) = hold(&writer).await;
        // Too heavy to share with the first: runs after it, on its own, and
        // is not undone with it.
        let light = gathered(&writer, 1, false);
        let heavy = writer.gather(MAX_GATHERED, |s| {
            s.fetch(&[insert(2)])?;
            Ok(true)
        });
        release.send(()).expect("release");
        held.await.expect("the hold");
        assert!(!light.await.expect("light"));
        assert!(
            heavy.await.expect("heavy"),
            "kept in a transaction of its own"
        );
        assert_eq!(stored(&writer).await, [2]);
    }

    #[tokio::test]
    async fn a_commit_that_fails_fails_everything_in_it_and_keeps_nothing() {
        let (_dir, writer) = writer();
        create(&writer).await;
        let (release, held) = hold(&writer).await;
        let innocent = writer.write(vec![insert(1)]);
        // A deferred foreign key fails only at COMMIT.
        let orphan = writer.write(vec![sql("INSERT INTO t (n, p) VALUES (2, 99)", vec![])]);
        release.send(()).expect("release");
        held.await
            .expect("the hold ran in a transaction of its own");
        for result in [innocent.await, orphan.await] {
            let Err(Error::StorageUnavailable(error)) = result else {
                panic!("every piece of the transaction fails retryably: {result:?}");
            };
            assert!(error.to_string().contains("FOREIGN KEY"), "{error}");
        }
        assert!(stored(&writer).await.is_empty());
        writer
            .write(vec![insert(3)])
            .await
            .expect("the writer goes on");
        assert_eq!(stored(&writer).await, [3]);
    }

    #[tokio::test]
    async fn the_thread_holds_the_turn_while_it_runs_and_lets_it_go_after() {
        let (_dir, writer) = writer();
        let (release, held) = hold(&writer).await;
        assert!(
            writer.turn.try_lock().is_err(),
            "a careful commit cannot start while the thread runs"
        );
        release.send(()).expect("release");
        held.await.expect("the hold ran");
        drop(writer.turn().await);
    }

    #[tokio::test]
    async fn after_close_nothing_runs_and_callers_hear_unavailable() {
        let (_dir, writer) = writer();
        writer.close().await;
        let result = writer.write(vec![]).await;
        assert!(
            matches!(result, Err(Error::StorageUnavailable(_))),
            "{result:?}"
        );
    }
}
