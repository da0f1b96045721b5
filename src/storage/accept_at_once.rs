//! The accept path's group commit on SQLite, as one gathered piece of work
//! on the writer thread (see `writer`): the key claims, the usage counts and
//! every INSERT in one call, sharing a transaction with the other accepts
//! waiting, and answered once durable. When a key turns out to be taken, a
//! recipient suppressed or an account out of quota (in this batch or in
//! one it shares the transaction with), its writes are undone and the
//! careful path decides job by job (`Store::commit_job_by_job`): replays,
//! suppressions and refusals are rare, so they pay for the extra work.

use std::collections::HashMap;

use sea_orm::{DatabaseBackend, Statement};

use super::Store;
use super::messages::{
    KEY_INSERT, ROWS_PER_INSERT, Rows, job_inserts, key_values, quota_of, unchecked_by_account,
};
use super::writer::Row;
use crate::domain::Result;
use crate::domain::send::commit::{CommitJob, JobOutcome};

/// What the claims and usage statements return, one shape for both so a
/// multi-statement query yields rows of one kind: (what, account, day,
/// recipients counted for the day, the account's own quota).
const KEY_CLAIMED: i64 = 1;
const USAGE: i64 = 2;
const SUPPRESSED: i64 = 3;

/// What ends a claim's INSERT: a key already held keeps its record and
/// returns nothing, so the rows returned count the keys claimed.
const CLAIM_TAIL: &str = " ON CONFLICT (\"account_id\", \"idempotency_key\") DO NOTHING \
                          RETURNING 1, account_id, 0, 0, NULL";

/// What the quota check needs of a job, owned for the writer thread.
struct Counted {
    account_id: String,
    day: i64,
    daily_quota: Option<u64>,
}

impl Store {
    /// Stores every job of `jobs` on the writer thread, with the other
    /// accepts waiting, when every key is free and every account has room,
    /// and returns once that is durable; `None` (nothing stored) when not,
    /// for the careful path to decide.
    pub(super) async fn commit_at_once(
        &self,
        jobs: &[CommitJob],
    ) -> Result<Option<Vec<JobOutcome>>> {
        let backend = DatabaseBackend::Sqlite;
        let mut statements = Vec::new();
        let claims: Vec<_> = jobs.iter().filter_map(|j| j.idempotency.as_ref()).collect();
        let mut claim_rows = Rows::with_tail("idempotency_keys", KEY_INSERT, CLAIM_TAIL);
        for record in &claims {
            claim_rows.push(key_values(record));
        }
        statements.extend(claim_rows.statements(backend));
        let mut wanted: Vec<((&str, i64), i64)> = Vec::new();
        for job in jobs {
            let group = (job.account_id.as_str(), job.day);
            let count = job.recipients() as i64;
            match wanted.iter_mut().find(|(g, _)| *g == group) {
                Some((_, n)) => *n += count,
                None => wanted.push((group, count)),
            }
        }
        for ((account_id, day), count) in &wanted {
            statements.push(Statement::from_sql_and_values(
                backend,
                format!(
                    "INSERT INTO daily_usage (account_id, day, recipients) VALUES (?, ?, ?) \
                     ON CONFLICT (account_id, day) DO UPDATE \
                     SET recipients = daily_usage.recipients + excluded.recipients \
                     RETURNING {USAGE}, account_id, day, recipients, \
                     (SELECT daily_quota FROM accounts WHERE id = ?)"
                ),
                [
                    (*account_id).into(),
                    (*day).into(),
                    (*count).into(),
                    (*account_id).into(),
                ],
            ));
        }
        statements.extend(suppression_probes(jobs));
        statements.extend(job_inserts(backend, jobs, |_| true));

        let counted: Vec<Counted> = jobs
            .iter()
            .map(|job| Counted {
                account_id: job.account_id.clone(),
                day: job.day,
                daily_quota: job.daily_quota,
            })
            .collect();
        let claims = claims.len();
        let weight = jobs.iter().map(|job| job.messages.len()).sum();
        let stored = self
            .sqlite_writer()
            .gather(weight, move |session| {
                let rows = session.fetch(&statements)?;
                all_fit(&counted, claims, &rows)
            })
            .await?;
        Ok(stored.then(|| vec![JobOutcome::Committed; jobs.len()]))
    }
}

/// Statements that return a row when a recipient of the jobs is on its
/// account's suppression list. Expiry is left to the careful path, which
/// a hit sends the batch to: the common case, no hit, costs one probe of
/// the list's index per address.
fn suppression_probes(jobs: &[CommitJob]) -> Vec<Statement> {
    let mut probes = Vec::new();
    for (account_id, keys, _) in unchecked_by_account(jobs, |_| true) {
        for chunk in keys.chunks(ROWS_PER_INSERT) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let mut values: Vec<sea_orm::Value> = vec![account_id.into()];
            values.extend(chunk.iter().map(|key| key.as_str().into()));
            probes.push(Statement::from_sql_and_values(
                DatabaseBackend::Sqlite,
                format!(
                    "SELECT {SUPPRESSED}, account_id, 0, 0, NULL FROM suppressions \
                     WHERE account_id = ? AND email_key IN ({marks}) LIMIT 1"
                ),
                values,
            ));
        }
    }
    probes
}

/// Whether every one of `claims` keys was claimed, no recipient is
/// suppressed and every job's account stays within its quota with the
/// whole batch counted.
fn all_fit(jobs: &[Counted], claims: usize, rows: &[Row]) -> Result<bool> {
    let mut claimed = 0;
    let mut usage: HashMap<(String, i64), (i64, Option<i64>)> = HashMap::new();
    for row in rows {
        match row.int(0)? {
            KEY_CLAIMED => claimed += 1,
            USAGE => {
                usage.insert((row.text(1)?, row.int(2)?), (row.int(3)?, row.opt_int(4)?));
            }
            SUPPRESSED => return Ok(false),
            _ => {}
        }
    }
    if claimed != claims {
        return Ok(false);
    }
    Ok(jobs.iter().all(|job| {
        let Some((used, own)) = usage.get(&(job.account_id.clone(), job.day)) else {
            return false;
        };
        quota_of(*own, job.daily_quota).is_none_or(|quota| Ord::max(*used, 0) as u64 <= quota)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_key_returns_the_row_that_counts_it() {
        assert!(CLAIM_TAIL.contains(&format!("RETURNING {KEY_CLAIMED}, account_id, 0, 0, NULL")));
    }
}
