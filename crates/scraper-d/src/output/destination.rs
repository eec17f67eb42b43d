//! Where an output file goes: a regular path gets a `.tmp` file renamed into place when complete;
//! an existing device, FIFO or other non-regular file (`--output /dev/null`) is written in place.
//!
//! Renaming a finished `/dev/null.tmp` over `/dev/null` would replace the system's null device
//! with a regular file (as root), and a pipe would stop being one.

use std::fs::File;
use std::path::Path;

/// Whether `path` exists and is not a regular file (following links): written in place.
pub(crate) fn is_special(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| !metadata.file_type().is_file())
}

/// Opens an existing non-regular file for writing, without creating or truncating anything.
pub(crate) fn open_in_place(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().write(true).open(path)
}

/// Flushes a regular file to the disk; a device or pipe has nothing to flush (and `fsync`
/// fails on some).
pub(crate) fn sync_if_regular(file: &File) -> std::io::Result<()> {
    if file.metadata()?.file_type().is_file() {
        file.sync_all()
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    use std::path::PathBuf;

    use cah_protocol::bundle::BundleStats;

    use crate::Candidate;
    use crate::bundle::BundleWriter;
    use crate::output::{CandidateWriter, OutputFormat};

    /// A named pipe in a fresh folder, and a thread that reads all of it.
    fn fifo() -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<Vec<u8>>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
        let reader_path = path.clone();
        let reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            std::fs::File::open(reader_path)
                .expect("open the pipe")
                .read_to_end(&mut bytes)
                .expect("read the pipe");
            bytes
        });
        (dir, path, reader)
    }

    fn still_a_pipe(dir: &tempfile::TempDir, path: &std::path::Path) {
        let kind = std::fs::metadata(path).expect("exists").file_type();
        assert!(kind.is_fifo(), "the pipe was replaced by {kind:?}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["pipe"], "no .tmp file is left");
    }

    #[test]
    fn candidates_are_written_into_a_pipe_not_over_it() {
        let (dir, path, reader) = fifo();
        assert!(super::is_special(&path));
        let mut writer = CandidateWriter::create(&path, OutputFormat::Jsonl).expect("create");
        writer
            .write(&Candidate {
                sample_id: 7,
                half: 0,
                url: "http://a.test/x.jpg".to_owned(),
                alt: "a picture".to_owned(),
                page_url: "http://a.test/".to_owned(),
                license: None,
                language: None,
                pair_hash: 1,
            })
            .expect("write");
        writer.finish().expect("finish");
        still_a_pipe(&dir, &path);
        let text = String::from_utf8(reader.join().expect("reader")).expect("utf-8");
        assert!(text.contains("\"url\":\"http://a.test/x.jpg\""), "{text}");
    }

    #[test]
    fn a_bundle_is_written_into_a_pipe_not_over_it() {
        let (dir, path, reader) = fifo();
        let writer = BundleWriter::create(&path).expect("create");
        writer.finish(BundleStats::default()).expect("finish");
        still_a_pipe(&dir, &path);
        let tar = reader.join().expect("reader");
        assert!(tar.len() >= 1024, "a tar of {} bytes", tar.len());
        let regular = dir.path().join("bundle.tar");
        assert!(
            !super::is_special(&regular),
            "a path that does not exist yet"
        );
    }
}
