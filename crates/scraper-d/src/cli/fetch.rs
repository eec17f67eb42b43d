//! Flags of `scraper-d fetch`: a URL list to one bundle, without a tracker.

use std::path::PathBuf;

use super::DownloadArgs;

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// File with one image URL per line (blank lines and `#` comments skipped; a line that is
    /// not UTF-8 counts as `bad_url`).
    #[arg(long, env = "SCRAPER_FETCH_URLS")]
    pub urls: PathBuf,
    /// The bundle to write (as PATH.tmp, renamed when complete).
    #[arg(long, env = "SCRAPER_FETCH_OUTPUT")]
    pub output: PathBuf,
    /// Print the summary as one JSON object on stderr instead of text.
    #[arg(long, env = "SCRAPER_SUMMARY_JSON", value_parser = super::EnvBool::off())]
    pub summary_json: bool,
    #[command(flatten)]
    pub download: DownloadArgs,
}
