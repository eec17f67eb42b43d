//! Figures for the dashboard, `/data` and `/metrics`: job states, throughput, ETA and leaderboards.

use cah_protocol::ClientType;
use cah_protocol::ext::DedupSet;
use sqlx::Row;

use crate::clients::{self, ClientSummary};
use crate::db::{Db, DbError, now_ms, to_u64};
use crate::dedup;

/// Hours shown in the jobs-per-hour chart.
pub const CHART_HOURS: i64 = 24;
/// Failed jobs listed on the dashboard (all are counted).
pub const LISTED_FAILED_JOBS: i64 = 20;
const HOUR_MS: i64 = 3_600_000;

/// A snapshot of the tracker's progress.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// `(stage, status, count)`.
    pub jobs_by_state: Vec<(String, String, u64)>,
    /// All jobs.
    pub total_jobs: u64,
    /// Closed jobs.
    pub closed_jobs: u64,
    /// Jobs handed off or closed (their CPU work is done).
    pub scraped_jobs: u64,
    /// Jobs failed for good: their WAT cannot be used (never handed out until an admin reset).
    pub failed_jobs: u64,
    /// The lowest-numbered failed jobs, at most [`LISTED_FAILED_JOBS`].
    pub failed: Vec<FailedJob>,
    /// Pairs credited.
    pub total_pairs: u64,
    /// Registered clients per type.
    pub clients_by_type: Vec<(ClientType, u64)>,
    /// Clients, most recent first (at most 50 per type).
    pub clients: Vec<ClientSummary>,
    /// `(hour start ms, jobs scraped, jobs closed)` for the last [`CHART_HOURS`] hours, oldest first.
    pub per_hour: Vec<(i64, u64, u64)>,
    /// Jobs closed in the last hour.
    pub closed_last_hour: u64,
    /// Time to finish at the last hour's rate, in words.
    pub eta: String,
    /// `(nickname, jobs, pairs)`, best first.
    pub leaderboard: Vec<(String, u64, u64)>,
    /// `(nickname, jobs)`, best first.
    pub cpu_leaderboard: Vec<(String, u64)>,
    /// Entries per dedup set.
    pub dedup_sizes: Vec<(DedupSet, u64)>,
}

/// A job failed for good, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedJob {
    /// The job's number, for `POST /admin/reset-job`.
    pub number: u64,
    /// The WAT URL.
    pub url: String,
    /// Reports of the WAT.
    pub failures: u64,
    /// The last report's reason.
    pub reason: String,
}

impl Stats {
    /// Completion in percent.
    pub fn completion(&self) -> f64 {
        if self.total_jobs == 0 {
            0.0
        } else {
            self.closed_jobs as f64 * 100.0 / self.total_jobs as f64
        }
    }

    /// Registered clients.
    pub fn connected(&self) -> u64 {
        self.clients_by_type.iter().map(|(_, count)| count).sum()
    }
}

/// Counts everything once, on the read connections.
pub async fn collect(db: &Db) -> Result<Stats, DbError> {
    let mut stats = Stats::default();
    let rows = sqlx::query(
        "SELECT stage, status, COUNT(*) AS n, CAST(COALESCE(SUM(pairs), 0) AS BIGINT) AS pairs FROM jobs GROUP BY stage, status ORDER BY stage, status",
    )
    .fetch_all(db.read_pool())
    .await?;
    for row in &rows {
        let stage: String = row.try_get("stage")?;
        let status: String = row.try_get("status")?;
        let count = to_u64(row.try_get("n")?);
        stats.total_jobs += count;
        if status == "closed" {
            stats.closed_jobs += count;
            stats.total_pairs += to_u64(row.try_get("pairs")?);
        }
        if status == "failed" {
            stats.failed_jobs += count;
        }
        // Handed to the GPU stage (pending or closed there), or closed by a HYBRID client in
        // the CPU stage: each job once.
        if stage == "gpu" || status == "closed" {
            stats.scraped_jobs += count;
        }
        stats.jobs_by_state.push((stage, status, count));
    }
    if stats.failed_jobs > 0 {
        stats.failed = failed_jobs(db).await?;
    }
    stats.clients_by_type = clients::count_by_type(db).await?;
    stats.clients = clients::list(db, Some(50)).await?;
    let now = now_ms();
    let first_hour = (now / HOUR_MS - (CHART_HOURS - 1)) * HOUR_MS;
    let mut per_hour: Vec<(i64, u64, u64)> = (0..CHART_HOURS)
        .map(|hour| (first_hour + hour * HOUR_MS, 0, 0))
        .collect();
    for (column, slot) in [("cpu_done_at", 1), ("closed_at", 2)] {
        let sql = format!(
            "SELECT {column} / {HOUR_MS} AS hour, COUNT(*) AS n FROM jobs WHERE {column} >= $1 GROUP BY {column} / {HOUR_MS}"
        );
        for row in sqlx::query(&sql)
            .bind(first_hour)
            .fetch_all(db.read_pool())
            .await?
        {
            let hour: i64 = row.try_get("hour")?;
            let index = usize::try_from(hour - first_hour / HOUR_MS).unwrap_or(usize::MAX);
            if let Some(entry) = per_hour.get_mut(index) {
                let count = to_u64(row.try_get("n")?);
                if slot == 1 {
                    entry.1 = count
                } else {
                    entry.2 = count
                }
            }
        }
    }
    stats.per_hour = per_hour;
    let closed_last_hour: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE closed_at >= $1")
            .bind(now - HOUR_MS)
            .fetch_one(db.read_pool())
            .await?;
    stats.closed_last_hour = to_u64(closed_last_hour);
    // Failed jobs will not close: they are not work left.
    let remaining = stats.total_jobs - stats.closed_jobs - stats.failed_jobs;
    stats.eta = eta(remaining, stats.closed_last_hour);
    for row in sqlx::query("SELECT nickname, jobs_completed, pairs_scraped FROM leaderboard ORDER BY jobs_completed DESC, nickname LIMIT 100")
        .fetch_all(db.read_pool())
        .await?
    {
        stats.leaderboard.push((
            row.try_get("nickname")?,
            to_u64(row.try_get("jobs_completed")?),
            to_u64(row.try_get("pairs_scraped")?),
        ));
    }
    for row in sqlx::query("SELECT nickname, jobs_completed FROM cpu_leaderboard ORDER BY jobs_completed DESC, nickname LIMIT 100")
        .fetch_all(db.read_pool())
        .await?
    {
        stats.cpu_leaderboard.push((row.try_get("nickname")?, to_u64(row.try_get("jobs_completed")?)));
    }
    stats.dedup_sizes = dedup::sizes(db).await?;
    Ok(stats)
}

/// The lowest-numbered failed jobs, from the partial index `jobs_failed`.
async fn failed_jobs(db: &Db) -> Result<Vec<FailedJob>, DbError> {
    let rows = sqlx::query(
        "SELECT number, url, failures, failure_reason FROM jobs WHERE status = 'failed' \
         ORDER BY number LIMIT $1",
    )
    .bind(LISTED_FAILED_JOBS)
    .fetch_all(db.read_pool())
    .await?;
    let mut failed = Vec::with_capacity(rows.len());
    for row in &rows {
        failed.push(FailedJob {
            number: to_u64(row.try_get("number")?),
            url: row.try_get("url")?,
            failures: to_u64(row.try_get("failures")?),
            reason: row
                .try_get::<Option<String>, _>("failure_reason")?
                .unwrap_or_default(),
        });
    }
    Ok(failed)
}

/// `"N days, H hours, M minutes"` to finish `remaining` jobs at `per_hour`, as 2021 wrote it.
pub fn eta(remaining: u64, per_hour: u64) -> String {
    if remaining == 0 {
        return "Finished".to_owned();
    }
    if per_hour == 0 {
        return "Calculating...".to_owned();
    }
    let minutes = remaining.saturating_mul(60) / per_hour;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days} day{}", if days == 1 { "" } else { "s" }));
    }
    if hours > 0 {
        parts.push(format!("{hours} hour{}", if hours == 1 { "" } else { "s" }));
    }
    parts.push(format!(
        "{minutes} minute{}",
        if minutes == 1 { "" } else { "s" }
    ));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn eta_in_words() {
        assert_eq!(super::eta(0, 5), "Finished");
        assert_eq!(super::eta(10, 0), "Calculating...");
        assert_eq!(super::eta(60, 60), "1 hour, 0 minutes");
        assert_eq!(super::eta(3000, 60), "2 days, 2 hours, 0 minutes");
        assert_eq!(super::eta(1, 120), "0 minutes");
    }
}
