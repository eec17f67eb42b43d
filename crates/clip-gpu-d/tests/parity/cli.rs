//! The `clip-gpu-d embed` command end to end against OpenAI preprocessing and tokenizer plus
//! Hugging Face `CLIPModel`, its refusal to fall back from CUDA to the CPU, and its usage
//! errors (exit 64, naming the flag and its environment variable).

use std::process::Command;

use clip_gpu_d::npy;

use crate::support;

#[test]
fn embed_command_matches_the_python_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let photos = support::photos();
    let chosen: Vec<_> = photos.iter().rev().step_by(4).take(4).cloned().collect();
    let texts = dir.path().join("texts.txt");
    std::fs::write(
        &texts,
        "a photo of a cat\nthe moon &amp; stars\n\nΣίσυφος 🙂\n",
    )
    .expect("write texts");
    let model = support::tiny_model();
    let prefix = dir.path().join("ours");
    let status = Command::new(env!("CARGO_BIN_EXE_clip-gpu-d"))
        .arg("embed")
        .arg("--model")
        .arg(&model)
        .arg("--texts-file")
        .arg(&texts)
        .arg("--output")
        .arg(&prefix)
        .arg("--batch-size")
        .arg("3")
        .arg("--images")
        .args(&chosen)
        .status()
        .expect("run clip-gpu-d");
    assert!(status.success(), "clip-gpu-d embed failed");

    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--model".as_ref(),
        model.as_os_str(),
        "--texts-file".as_ref(),
        texts.as_os_str(),
    ];
    let python_prefix = dir.path().join("python");
    args.extend([
        "--out".as_ref(),
        python_prefix.as_os_str(),
        "--images".as_ref(),
    ]);
    args.extend(chosen.iter().map(|path| path.as_os_str()));
    support::run_python(&support::test_script("model_reference.py"), &args);

    for suffix in [".img_emb.npy", ".text_emb.npy", ".similarity.npy"] {
        let read = |name: &str| {
            npy::read_f32(&dir.path().join(format!("{name}{suffix}"))).expect("read npy")
        };
        let (rows, cols, ours) = read("ours");
        let (python_rows, python_cols, theirs) = read("python");
        assert_eq!((rows, cols), (python_rows, python_cols), "{suffix} shape");
        let error = support::max_abs_error(&ours, &theirs);
        eprintln!("embed command parity {suffix}: max abs error {error:e}");
        assert!(error <= 1e-3, "{suffix} differs by {error}");
    }
}

#[test]
fn cuda_request_never_falls_back_to_the_cpu() {
    if tch::Cuda::is_available() {
        return; // On a GPU machine scripts/gpu-check.sh covers CUDA.
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, "a dog\n").expect("write texts");
    let photo = support::photos().into_iter().next().expect("a photo");
    let output = Command::new(env!("CARGO_BIN_EXE_clip-gpu-d"))
        .args(["embed", "--device", "cuda", "--model"])
        .arg(support::tiny_model())
        .arg("--texts-file")
        .arg(&texts)
        .arg("--output")
        .arg(dir.path().join("out"))
        .arg("--images")
        .arg(photo)
        .output()
        .expect("run clip-gpu-d");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "cuda request succeeded without CUDA"
    );
    assert!(
        stderr.contains("device cuda:0 is unavailable"),
        "unclear error: {stderr}"
    );
    assert!(!dir.path().join("out.img_emb.npy").exists());
}

/// Runs `embed` on one photo into `dir` with `extra` flags and `envs`; asserts exit 64 (a usage
/// error) with no output written, and returns stderr.
fn embed_refused(dir: &std::path::Path, extra: &[&str], envs: &[(&str, &str)]) -> String {
    let texts = dir.join("texts.txt");
    std::fs::write(&texts, "a dog\n").expect("write texts");
    let photo = support::photos().into_iter().next().expect("a photo");
    let mut command = Command::new(env!("CARGO_BIN_EXE_clip-gpu-d"));
    command
        .args(["embed", "--device", "cpu", "--model"])
        .arg(support::tiny_model())
        .arg("--texts-file")
        .arg(&texts)
        .arg("--images")
        .arg(photo);
    if !extra.contains(&"--output") {
        command.arg("--output").arg(dir.join("out"));
    }
    let output = command
        .args(extra)
        .envs(envs.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run clip-gpu-d");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(64),
        "{extra:?} {envs:?}: {stderr}"
    );
    let written: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry").file_name())
        .filter(|name| name.to_string_lossy().ends_with(".npy"))
        .collect();
    assert!(written.is_empty(), "{written:?}");
    stderr
}

#[test]
fn zero_or_negative_counts_are_usage_errors_naming_the_flag_and_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    // libtorch aborted on these ("Expected positive number of threads").
    let stderr = embed_refused(dir.path(), &[], &[("CLIP_CPU_THREADS", "0")]);
    assert!(
        stderr.contains("invalid value '0' for '--cpu-threads")
            && stderr.contains("CLIP_CPU_THREADS, which is set to \"0\""),
        "{stderr}"
    );
    let stderr = embed_refused(dir.path(), &["--cpu-threads=-3"], &[]);
    assert!(
        stderr.contains("'-3' for '--cpu-threads") && stderr.contains("at least 1"),
        "{stderr}"
    );
    let stderr = embed_refused(dir.path(), &["--batch-size", "0"], &[]);
    assert!(
        stderr.contains("'0' for '--batch-size") && stderr.contains("CLIP_BATCH_SIZE"),
        "{stderr}"
    );
}

#[test]
fn boolean_variables_take_the_forms_environment_files_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let texts = dir.path().join("texts.txt");
    std::fs::write(&texts, "a dog\n").expect("write texts");
    let photo = support::photos().into_iter().next().expect("a photo");
    let prefix = dir.path().join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_clip-gpu-d"))
        .args(["embed", "--device", "cpu", "--model"])
        .arg(support::tiny_model())
        .arg("--texts-file")
        .arg(&texts)
        .arg("--output")
        .arg(&prefix)
        .arg("--images")
        .arg(photo)
        // Refused before: only `true` and `false` were.
        .env("CLIP_EMBED_DUMP_INPUTS", "1")
        .output()
        .expect("run clip-gpu-d");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(dir.path().join("out.pixels.npy").is_file(), "{stderr}");
    assert!(dir.path().join("out.tokens.npy").is_file(), "{stderr}");
}

#[test]
fn an_output_prefix_that_cannot_be_written_is_refused_before_the_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    // This did all the work, then failed with a bare "No such file or directory".
    let missing = dir.path().join("missing/run");
    let stderr = embed_refused(
        dir.path(),
        &["--output", &missing.display().to_string()],
        &[],
    );
    assert!(
        stderr.contains(&format!(
            "--output (CLIP_EMBED_OUTPUT) {}: the folder {} does not exist",
            missing.display(),
            dir.path().join("missing").display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("model loaded"), "{stderr}");
    // A folder as the prefix wrote FOLDER.img_emb.npy and its siblings next to the folder.
    let folder = dir.path().join("embeddings");
    std::fs::create_dir(&folder).expect("folder");
    for output in [
        folder.display().to_string(),
        format!("{}/", folder.display()),
    ] {
        let stderr = embed_refused(dir.path(), &["--output", &output], &[]);
        assert!(
            stderr.contains("is a folder, but it is a path prefix")
                && stderr.contains(&format!("--output {}/run", folder.display())),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_dir(&folder).expect("read folder").count(), 0);
}
