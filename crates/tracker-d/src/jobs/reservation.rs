//! Reservations a tokenless 2021 `lookup-wat` made: bound to the caller's address, not to a token.
//!
//! The 2021 full-WAT client (`FullWATClient`) registers a CPU client, calls `lookup-wat` with
//! only a WAT URL, and reports the halves with `markasdone-cpu` carrying its token. The
//! tracker reserves such a lookup for an idle CPU client registered from the caller's address,
//! which on a machine running several of these processes may be another process's client.
//! Those jobs, and only those, may be completed by any client of that address; a job claimed
//! with a token is completed by that token alone.

use crate::db::{Db, DbError, to_i64};

/// Marks `numbers`, just claimed by `holder`, as reserved from `address`.
pub async fn mark(db: &Db, holder: &str, numbers: &[u64], address: &str) -> Result<(), DbError> {
    for number in numbers {
        sqlx::query(
            "UPDATE jobs SET reserved_from = $1 \
             WHERE number = $2 AND holder = $3 AND status = 'pending'",
        )
        .bind(address)
        .bind(to_i64(*number))
        .bind(holder)
        .execute(db.pool())
        .await?;
    }
    Ok(())
}

/// The holder of CPU job `number` if a tokenless lookup from `address` reserved it.
pub async fn holder_for(db: &Db, number: u64, address: &str) -> Result<Option<String>, DbError> {
    let holder: Option<Option<String>> = sqlx::query_scalar(
        "SELECT holder FROM jobs WHERE number = $1 AND reserved_from = $2 \
         AND status = 'pending' AND stage = 'cpu'",
    )
    .bind(to_i64(number))
    .bind(address)
    .fetch_optional(db.pool())
    .await?;
    Ok(holder.flatten())
}
