//! Dedup sets (`parsed`, `clipped`, `main`, as 2021's bloom servers): exact sets of 64-bit hashes.
//!
//! Unlike 2021's bloom filters (5 % false positives per filter, compounding across stacked
//! filters), these are exact: a hash is reported as seen only if it was added before. The only
//! false positive is a 64-bit collision, about n / 2^64 per lookup (5.4e-11 with a billion
//! entries). Check-and-add is one `INSERT … ON CONFLICT DO NOTHING RETURNING` per chunk inside
//! one transaction, so two concurrent callers can never both be told a hash is new. The same
//! transaction adds the number of hashes it inserted to the set's size counter
//! (`dedup_sizes`), so the sizes are read, never counted.

pub mod quota;

use std::collections::HashSet;

use cah_protocol::ext::DedupSet;

use crate::db::{Db, DbError, to_i64, to_u64};

/// Hashes per statement (two bind parameters each stay far below every driver's limit).
const CHUNK: usize = 500;

/// Most hashes accepted in one request.
pub const MAX_HASHES_PER_REQUEST: usize = 100_000;

/// Counter rows per set (see the schema's version 5).
const SIZE_SLOTS: u64 = 16;

/// For each hash in order, whether it was absent from `set` (first occurrence only); with
/// `add`, the absent ones are added atomically with the check.
pub async fn check(
    db: &Db,
    set: DedupSet,
    hashes: &[u64],
    add: bool,
) -> Result<Vec<bool>, DbError> {
    let set_id = set_id(set);
    let mut unique: Vec<u64> = hashes.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let mut absent = HashSet::with_capacity(unique.len());
    let mut transaction = db.pool().begin().await?;
    for chunk in unique.chunks(CHUNK) {
        if add {
            let values: Vec<String> = (0..chunk.len())
                .map(|index| format!("($1, ${})", index + 2))
                .collect();
            let sql = format!(
                "INSERT INTO dedup (set_id, hash) VALUES {} ON CONFLICT DO NOTHING RETURNING hash",
                values.join(", ")
            );
            let mut query = sqlx::query_scalar::<_, i64>(&sql).bind(set_id);
            for hash in chunk {
                query = query.bind(to_i64(*hash));
            }
            absent.extend(
                query
                    .fetch_all(&mut *transaction)
                    .await?
                    .into_iter()
                    .map(to_u64),
            );
        } else {
            let placeholders: Vec<String> = (0..chunk.len())
                .map(|index| format!("${}", index + 2))
                .collect();
            let sql = format!(
                "SELECT hash FROM dedup WHERE set_id = $1 AND hash IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query_scalar::<_, i64>(&sql).bind(set_id);
            for hash in chunk {
                query = query.bind(to_i64(*hash));
            }
            let present: HashSet<u64> = query
                .fetch_all(&mut *transaction)
                .await?
                .into_iter()
                .map(to_u64)
                .collect();
            absent.extend(chunk.iter().filter(|hash| !present.contains(hash)));
        }
    }
    if add && !absent.is_empty() {
        // Last in the transaction: the counter row stays locked only until the commit.
        sqlx::query(
            "INSERT INTO dedup_sizes (set_id, slot, entries) VALUES ($1, $2, $3) \
             ON CONFLICT (set_id, slot) DO UPDATE SET entries = dedup_sizes.entries + excluded.entries",
        )
        .bind(set_id)
        .bind(to_i64(rand::random::<u64>() % SIZE_SLOTS))
        .bind(to_i64(absent.len() as u64))
        .execute(&mut *transaction)
        .await?;
    }
    transaction.commit().await?;
    let mut seen = HashSet::with_capacity(hashes.len());
    Ok(hashes
        .iter()
        .map(|hash| seen.insert(*hash) && absent.contains(hash))
        .collect())
}

/// Entries per set, from the counters: a few rows whatever the sets' sizes.
pub async fn sizes(db: &Db) -> Result<Vec<(DedupSet, u64)>, DbError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT set_id, CAST(SUM(entries) AS BIGINT) FROM dedup_sizes GROUP BY set_id",
    )
    .fetch_all(db.read_pool())
    .await?;
    Ok(DedupSet::ALL
        .into_iter()
        .map(|set| {
            let entries = rows
                .iter()
                .find(|(id, _)| *id == set_id(set))
                .map_or(0, |(_, entries)| to_u64(*entries));
            (set, entries)
        })
        .collect())
}

fn set_id(set: DedupSet) -> i64 {
    match set {
        DedupSet::Parsed => 1,
        DedupSet::Clipped => 2,
        DedupSet::Main => 3,
    }
}
