//! Plain-text tables for stdout, and the small formatting helpers they need.

use std::time::{Duration, SystemTime};

/// Left-aligned columns separated by two spaces; the first row is the header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|cell| (*cell).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            let width = widths.get(index).copied().unwrap_or(0);
            line.push_str(&format!("{cell:<width$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Seconds since the Unix epoch of an API timestamp (`2024-12-01T10:00:00+00:00`).
pub fn parse_api_time(text: &str) -> Option<SystemTime> {
    let normalized = text.replace("+00:00", "Z");
    humantime::parse_rfc3339_weak(&normalized)
        .or_else(|_| humantime::parse_rfc3339(&normalized))
        .ok()
}

/// `3d4h`, `2h5m`, `12m`, `40s`: the two largest units.
pub fn short_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days}d{hours}h")
    } else if hours > 0 {
        format!("{hours}h{minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{seconds}s")
    }
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let text = table(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(text, "A     BB\nlong  x\n");
        assert_eq!(short_duration(Duration::from_secs(90_000)), "1d1h");
        assert_eq!(short_duration(Duration::from_secs(3_700)), "1h1m");
        assert_eq!(short_duration(Duration::from_secs(42)), "42s");
        let time = parse_api_time("2024-12-01T10:00:00+00:00").expect("parses");
        assert_eq!(
            time.duration_since(SystemTime::UNIX_EPOCH)
                .expect("after epoch")
                .as_secs(),
            1_733_047_200
        );
    }
}
