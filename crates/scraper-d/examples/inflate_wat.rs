//! Plain decompression of a WAT file, for scripts/bench-wat.sh: flate2's `MultiGzDecoder`
//! (zlib-rs), or with `--members` scraper-d's own member reader (libdeflate, WARC framing, no
//! JSON), the floor under `scraper-d extract`.

use std::io::Read;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (members, path) = match args.as_slice() {
        [flag, path] if flag == "--members" => (true, path),
        [path] => (false, path),
        _ => anyhow::bail!("usage: inflate_wat [--members] FILE"),
    };
    let file = std::fs::File::open(path)?;
    let n_bytes = if members {
        let mut reader =
            scraper_d::wat::WatReader::new(file, scraper_d::extract::DEFAULT_MAX_RECORD_BYTES);
        while reader.next_event()?.is_some() {}
        reader.decompressed_bytes()
    } else {
        let mut decoder = flate2::bufread::MultiGzDecoder::new(std::io::BufReader::with_capacity(
            256 * 1024,
            file,
        ));
        let mut buffer = vec![0u8; 256 * 1024];
        let mut n_bytes = 0u64;
        loop {
            let n = decoder.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            n_bytes += n as u64;
        }
        n_bytes
    };
    std::io::Write::write_all(&mut std::io::stderr(), format!("{n_bytes}\n").as_bytes())?;
    Ok(())
}
