//! The `clip-gpu-d embed` command end to end against OpenAI preprocessing and tokenizer plus
//! Hugging Face `CLIPModel`, and its refusal to fall back from CUDA to the CPU.

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
