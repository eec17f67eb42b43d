//! Plain decompression of a WAT file with flate2 (the zlib-rs backend scraper-d uses), for scripts/bench-wat.sh.

use std::io::Read;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: inflate_wat FILE"))?;
    let file = std::fs::File::open(&path)?;
    let mut decoder =
        flate2::bufread::MultiGzDecoder::new(std::io::BufReader::with_capacity(256 * 1024, file));
    let mut buffer = vec![0u8; 256 * 1024];
    let mut n_bytes = 0u64;
    loop {
        let n = decoder.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        n_bytes += n as u64;
    }
    std::io::Write::write_all(&mut std::io::stderr(), format!("{n_bytes}\n").as_bytes())?;
    Ok(())
}
