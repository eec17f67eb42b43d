//! Read-only pages: the HTML dashboard and leaderboard, `/data`, `/metrics` and per-worker JSON.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Json};
use cah_protocol::ClientType;
use cah_protocol::legacy::{DataResponse, WorkerData};

use super::error::AppError;
use super::json_body::BodyBudget;
use crate::stats::Stats;
use crate::tracker::TrackerError;

type Tracker = State<super::State>;

pub(super) async fn data(State(tracker): Tracker) -> Result<Json<DataResponse>, AppError> {
    let stats = tracker.stats().await?;
    Ok(Json(DataResponse {
        completion_str: format!(
            "{} / {}",
            thousands(stats.closed_jobs),
            thousands(stats.total_jobs)
        ),
        completion_float: stats.completion(),
        total_connected_workers: stats.connected(),
        total_pairs_scraped: stats.total_pairs,
        eta: stats.eta.clone(),
        failed_jobs: Some(stats.failed_jobs),
    }))
}

pub(super) async fn metrics(
    State(tracker): Tracker,
    Extension(bodies): Extension<Arc<BodyBudget>>,
) -> Result<Response, AppError> {
    let stats = tracker.stats().await?;
    let mut text = tracker.metrics().render(&stats);
    bodies.render(&mut text);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

pub(super) async fn worker_data(
    State(tracker): Tracker,
    Path((client_type, display_name)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let client_type = ClientType::parse(&client_type)
        .ok_or_else(|| TrackerError::Invalid(format!("unknown client type {client_type:?}")))?;
    let client = crate::clients::find(tracker.db(), client_type, &display_name)
        .await
        .map_err(TrackerError::from)?;
    let Some(client) = client else {
        return Ok((StatusCode::NOT_FOUND, "worker not found").into_response());
    };
    Ok(Json(WorkerData {
        display_name: client.display_name,
        shard_number: client.job,
        progress: client.progress,
        jobs_completed: client.jobs_completed,
        first_seen: client.first_seen / 1000,
        last_seen: client.last_seen / 1000,
        user_nickname: client.nickname,
        client_type: client.client_type,
    })
    .into_response())
}

pub(super) async fn dashboard(State(tracker): Tracker) -> Result<Html<String>, AppError> {
    let stats = tracker.stats().await?;
    let mut page = head("Crawling@Home tracker");
    let _ = write!(
        page,
        "<h1>Crawling@Home</h1>\
         <section id=\"progress\"><h2>Progress</h2>\
         <progress max=\"100\" value=\"{completion:.2}\"></progress> \
         <span id=\"completion\">{completion:.2}% ({closed} / {total} jobs closed)</span>\
         <ul><li>scraped (handed to GPU or closed): <b id=\"scraped\">{scraped}</b></li>\
         <li>pairs kept: <b id=\"pairs\">{pairs}</b></li>\
         <li>closed in the last hour: <b>{last_hour}</b></li>\
         <li>ETA: <b id=\"eta\">{eta}</b></li>\
         <li>failed (their WAT cannot be used; never handed out again): <b id=\"failed\">{failed}</b></li></ul>",
        completion = stats.completion(),
        closed = thousands(stats.closed_jobs),
        total = thousands(stats.total_jobs),
        scraped = thousands(stats.scraped_jobs),
        pairs = thousands(stats.total_pairs),
        last_hour = thousands(stats.closed_last_hour),
        eta = escape(&stats.eta),
        failed = thousands(stats.failed_jobs),
    );
    failed_jobs_table(&mut page, &stats);
    page.push_str("</section><section id=\"chart\"><h2>Jobs per hour (last 24 h)</h2>");
    page.push_str(&chart(&stats));
    page.push_str("</section><section id=\"workers\"><h2>Workers</h2>");
    for client_type in [ClientType::Cpu, ClientType::Gpu, ClientType::Hybrid] {
        let count = stats
            .clients_by_type
            .iter()
            .find(|(kind, _)| *kind == client_type)
            .map_or(0, |(_, count)| *count);
        let _ = write!(
            page,
            "<h3>{client_type} workers: {count}</h3><table class=\"workers\" data-type=\"{client_type}\">\
             <tr><th>worker</th><th>nickname</th><th>job</th><th>progress</th><th>jobs done</th><th>last seen</th></tr>"
        );
        let now = crate::db::now_ms();
        for client in stats
            .clients
            .iter()
            .filter(|client| client.client_type == client_type)
        {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} s ago</td></tr>",
                escape(&client.display_name),
                escape(&client.nickname),
                client
                    .job
                    .map_or_else(|| "-".to_owned(), |job| job.to_string()),
                escape(&client.progress),
                client.jobs_completed,
                (now - client.last_seen).max(0) / 1000,
            );
        }
        page.push_str("</table>");
    }
    page.push_str("</section><section id=\"leaderboard\"><h2>Leaderboard</h2>");
    leaderboard_tables(&mut page, &stats, 20);
    page.push_str("</section></body></html>");
    Ok(Html(page))
}

pub(super) async fn leaderboard(State(tracker): Tracker) -> Result<Html<String>, AppError> {
    let stats = tracker.stats().await?;
    let mut page = head("Crawling@Home leaderboard");
    page.push_str("<h1>Leaderboard</h1>");
    leaderboard_tables(&mut page, &stats, 100);
    page.push_str("</body></html>");
    Ok(Html(page))
}

fn head(title: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}\
         table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}\
         progress{{width:30em}}svg rect.closed{{fill:#2a7}}svg rect.scraped{{fill:#58c}}</style></head><body>"
    )
}

fn leaderboard_tables(page: &mut String, stats: &Stats, limit: usize) {
    page.push_str("<h3>Scoring (GPU and hybrid)</h3><table id=\"leaderboard-gpu\"><tr><th>#</th><th>nickname</th><th>jobs</th><th>pairs</th></tr>");
    for (rank, (nickname, jobs, pairs)) in stats.leaderboard.iter().take(limit).enumerate() {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{jobs}</td><td>{}</td></tr>",
            rank + 1,
            escape(nickname),
            thousands(*pairs)
        );
    }
    page.push_str("</table><h3>Scraping (CPU)</h3><table id=\"leaderboard-cpu\"><tr><th>#</th><th>nickname</th><th>jobs</th></tr>");
    for (rank, (nickname, jobs)) in stats.cpu_leaderboard.iter().take(limit).enumerate() {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{jobs}</td></tr>",
            rank + 1,
            escape(nickname)
        );
    }
    page.push_str("</table>");
}

/// The failed jobs, with the reason their WAT was last reported for; `POST /admin/reset-job`
/// reopens one.
fn failed_jobs_table(page: &mut String, stats: &Stats) {
    if stats.failed.is_empty() {
        return;
    }
    page.push_str(
        "<table id=\"failed-jobs\"><tr><th>job</th><th>WAT</th><th>reports</th><th>last reason</th></tr>",
    );
    for job in &stats.failed {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            job.number,
            escape(&job.url),
            job.failures,
            escape(&job.reason)
        );
    }
    if stats.failed_jobs > stats.failed.len() as u64 {
        let _ = write!(
            page,
            "<tr><td colspan=\"4\">and {} more</td></tr>",
            thousands(stats.failed_jobs - stats.failed.len() as u64)
        );
    }
    page.push_str("</table>");
}

/// A bar chart of jobs scraped and closed per hour, as inline SVG.
fn chart(stats: &Stats) -> String {
    let peak = stats
        .per_hour
        .iter()
        .map(|(_, scraped, closed)| (*scraped).max(*closed))
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, height, bar) = (720_u64, 160_u64, 30_u64);
    let mut svg = format!(
        "<svg id=\"jobs-per-hour\" width=\"{width}\" height=\"{}\" role=\"img\" aria-label=\"jobs per hour\">",
        height + 20
    );
    for (index, (hour_start, scraped, closed)) in stats.per_hour.iter().enumerate() {
        let x = index as u64 * bar;
        for (offset, class, value) in [(2, "scraped", *scraped), (15, "closed", *closed)] {
            let h = value * height / peak;
            let _ = write!(
                svg,
                "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"12\" height=\"{h}\"><title>{class}: {value}</title></rect>",
                x + offset,
                height - h
            );
        }
        if index % 4 == 0 {
            let hour = (hour_start / 3_600_000) % 24;
            let _ = write!(
                svg,
                "<text x=\"{x}\" y=\"{}\" font-size=\"10\">{hour:02}:00</text>",
                height + 14
            );
        }
    }
    svg.push_str("</svg><p><span style=\"color:#58c\">■</span> scraped <span style=\"color:#2a7\">■</span> closed (UTC hours)</p>");
    svg
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn formatting() {
        assert_eq!(super::thousands(8_569_338), "8,569,338");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::escape("<b>\"x\"&"), "&lt;b&gt;&quot;x&quot;&amp;");
    }
}
