//! The 2021 full-WAT (`/custom/*`) flow, with the reservation 2021 lacked, and other legacy reads.

use std::net::IpAddr;

use cah_protocol::legacy::{CustomResponse, MarkAsDoneCpuRequest, ShardInfo};
use cah_protocol::{ClientType, IdString};

use super::{Tracker, TrackerError};
use crate::clients;
use crate::jobs::{self, Completion};

impl Tracker {
    /// `/custom/get-cpu-wat`: a WAT whose halves are all open, or `None`.
    pub async fn get_cpu_wat(&self) -> Result<Option<String>, TrackerError> {
        Ok(jobs::open_wat_url(&self.db).await?)
    }

    /// `/custom/lookup-wat`: reserves the open halves of `url`.
    ///
    /// 2021 reserved nothing here, so two workers could scrape the same WAT. We reserve for
    /// the client named by `token` or, for the 2021 client that sends no token, for an idle
    /// CPU client registered from the caller's address (the full-WAT client registers one
    /// first). Such a reservation is bound to the address, not to a token (see
    /// [`jobs::reservation`]): with several full-WAT processes on one machine, it may land on
    /// another process's client, and `markasdone-cpu` from that address completes it.
    pub async fn lookup_wat(
        &self,
        url: &str,
        token: Option<&str>,
        address: IpAddr,
    ) -> Result<CustomResponse, TrackerError> {
        let holder = match token {
            Some(token) => {
                let client = self.client(token, None).await?;
                if client.client_type != ClientType::Cpu {
                    return Ok(failed("full-WAT jobs are for CPU clients"));
                }
                client.token
            }
            None => match clients::idle_cpu_client_at(&self.db, &address.to_string()).await? {
                Some(token) => token,
                None => {
                    return Ok(failed(
                        "register a CPU client (GET /api/new?type=CPU) first",
                    ));
                }
            },
        };
        let _claiming = self.claim_locks.lock(&holder).await;
        // A client picked for being idle holds nothing of its own: what it may hold now is a
        // concurrent tokenless lookup's reservation, which this one must not release.
        let previous = match token {
            Some(_) => jobs::held(&self.db, &holder).await?,
            None => Vec::new(),
        };
        let claimed = jobs::claim_wat_by_url(&self.db, &holder, url, self.lease_until()).await?;
        if claimed.is_empty() {
            return Ok(failed("Could not find WAT/WARC."));
        }
        if token.is_none() {
            let numbers: Vec<u64> = claimed.iter().map(|job| job.number).collect();
            jobs::reservation::mark(&self.db, &holder, &numbers, &address.to_string()).await?;
        }
        // Like newJob, a new reservation replaces the previous one, but only once it succeeded.
        for number in previous {
            jobs::release(&self.db, &holder, Some(number)).await?;
        }
        self.metrics.add(&self.metrics.claims, claimed.len() as u64);
        let shards = claimed
            .into_iter()
            .map(|job| {
                (
                    job.number,
                    ShardInfo {
                        url: job.url,
                        start_id: IdString(job.start_id),
                        end_id: IdString(job.end_id),
                        shard: job.shard,
                    },
                )
            })
            .collect();
        Ok(CustomResponse {
            status: "success".into(),
            detail: None,
            shards: Some(shards),
            completed: None,
        })
    }

    /// `/custom/markasdone-cpu`: hands off each listed shard that the caller holds, or that a
    /// tokenless `lookup-wat` from the caller's address reserved (for whichever client of that
    /// address it picked). A job claimed with a token is completed by that token alone.
    ///
    /// At most [`MAX_SHARDS_PER_MARK`] shards (2021's client sends the two halves of its WAT),
    /// every shard and handoff is checked before any is completed, and the completions are
    /// one transaction, so a refusal, a lease lost meanwhile or a database error leaves them
    /// all held.
    pub async fn mark_as_done_cpu(
        &self,
        request: &MarkAsDoneCpuRequest,
    ) -> Result<CustomResponse, TrackerError> {
        let token = request
            .token
            .as_deref()
            .ok_or_else(|| TrackerError::Invalid("markasdone-cpu needs your token".into()))?;
        if request.shards.len() > MAX_SHARDS_PER_MARK {
            return Err(TrackerError::Invalid(format!(
                "at most {MAX_SHARDS_PER_MARK} shards per markasdone-cpu (the halves of one WAT)"
            )));
        }
        let caller = self.client(token, None).await?;
        let mut handoffs = Vec::with_capacity(request.shards.len());
        for number in &request.shards {
            let Some(url) = request.urls.get(&number.to_string()) else {
                return Ok(failed(&format!("no url given for shard {number}")));
            };
            if handoffs.iter().any(|(listed, _, _)| listed == number) {
                continue;
            }
            let holder = if jobs::held(&self.db, &caller.token).await?.contains(number) {
                Some(caller.token.clone())
            } else {
                jobs::reservation::holder_for(&self.db, *number, &caller.address).await?
            };
            let Some(holder) = holder else {
                continue;
            };
            let as_caller = clients::Client {
                token: holder,
                client_type: ClientType::Cpu,
                ..caller.clone()
            };
            let url = self.check_cpu_completion(&as_caller, *number, url).await?;
            handoffs.push((*number, as_caller, url));
        }
        // All or none: a lease that expired since the checks refuses the whole request.
        let completions: Vec<Completion> = handoffs
            .iter()
            .map(|(_, _, url)| Completion::HandOff {
                gpu_url: (*url).to_owned(),
            })
            .collect();
        let batch: Vec<jobs::Pending<'_>> = handoffs
            .iter()
            .zip(&completions)
            .map(|((number, as_caller, _), completion)| jobs::Pending {
                holder: &as_caller.token,
                nickname: &as_caller.nickname,
                number: *number,
                completion,
            })
            .collect();
        if let Some(index) = jobs::complete_all(&self.db, &batch).await? {
            let (number, as_caller, _) = &handoffs[index];
            return Err(self
                .refusal(as_caller, *number, &completions[index])
                .await?);
        }
        for ((number, as_caller, _), completion) in handoffs.iter().zip(&completions) {
            self.count_completion(as_caller, *number, completion);
        }
        Ok(CustomResponse {
            status: "success".into(),
            detail: None,
            shards: None,
            completed: Some(handoffs.len() as u64),
        })
    }

    /// `/api/isCompleted`: addresses whose job is closed or that no job carries.
    pub async fn is_completed(&self, addresses: &[String]) -> Result<Vec<String>, TrackerError> {
        if addresses.len() > 10_000 {
            return Err(TrackerError::Invalid(
                "at most 10000 addresses per request".into(),
            ));
        }
        Ok(jobs::completed_addresses(&self.db, addresses).await?)
    }

    /// Reopens a job (admin): back to the CPU queue, whatever its state (a `failed` job too),
    /// with no WAT failures counted.
    pub async fn reset_job(&self, number: u64) -> Result<bool, TrackerError> {
        let result = sqlx::query(
            "UPDATE jobs SET stage = 'cpu', status = 'open', holder = NULL, lease_until = NULL, \
             gpu_url = NULL, cpu_completor = NULL, cpu_holder = NULL, completor = NULL, pairs = NULL, \
             cpu_done_at = NULL, closed_at = NULL, failures = 0, failure_reason = NULL \
             WHERE number = $1",
        )
        .bind(crate::db::to_i64(number))
        .execute(self.db.pool())
        .await
        .map_err(crate::db::DbError::from)?;
        self.db.open_floor().reset();
        self.db.held_jobs().forget_all();
        Ok(result.rows_affected() == 1)
    }
}

/// Most shards one `markasdone-cpu` may list: 2021's full-WAT client reports the two halves of
/// its WAT at once.
pub const MAX_SHARDS_PER_MARK: usize = 2;

fn failed(detail: &str) -> CustomResponse {
    CustomResponse {
        status: "failed".into(),
        detail: Some(detail.to_owned()),
        shards: None,
        completed: None,
    }
}
