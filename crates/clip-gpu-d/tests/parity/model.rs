//! Embeddings equal Hugging Face `CLIPModel`'s on the same inputs, in every precision, and
//! do not depend on what else is in the batch.

use std::path::PathBuf;
use std::sync::OnceLock;

use clip_gpu_d::backend::torch::TorchBackend;
use clip_gpu_d::backend::{BackendThread, Embeddings, ImageBatch, TextBatch};
use clip_gpu_d::preprocess::preprocess;
use clip_gpu_d::tokenizer::CONTEXT_LENGTH;
use clip_gpu_d::{DeviceSpec, Precision, Tokenizer, npy};

use crate::support;

const SIDE: usize = 224;
const TEXTS: [&str; 7] = [
    "a photo of a cat",
    "an astronaut on the moon",
    "",
    "Coffee &amp; a rocket 🚀 — “quoted”",
    "ΟΔΟΣ İstanbul 日本語",
    "a very long caption that keeps going and going and going and going and going and going and going and going and going and going and going and going and going and going",
    "x",
];

struct Inputs {
    images: ImageBatch,
    texts: TextBatch,
}

struct Reference {
    images: Vec<f32>,
    texts: Vec<f32>,
    similarity: Vec<f32>,
    dim: usize,
}

fn inputs() -> &'static Inputs {
    static INPUTS: OnceLock<Inputs> = OnceLock::new();
    INPUTS.get_or_init(|| {
        let photos = support::photos();
        let chosen: Vec<PathBuf> = photos
            .iter()
            .step_by(photos.len() / 5)
            .take(5)
            .cloned()
            .collect();
        let mut pixels = Vec::new();
        for path in &chosen {
            pixels.extend(
                preprocess(&std::fs::read(path).expect("read photo"), SIDE).expect("preprocess"),
            );
        }
        let tokenizer =
            Tokenizer::from_file(&support::tiny_model().join("tokenizer.json")).expect("tokenizer");
        Inputs {
            images: ImageBatch {
                n_images: chosen.len(),
                pixels,
            },
            texts: TextBatch {
                n_texts: TEXTS.len(),
                token_ids: tokenizer.tokenize_batch(&TEXTS),
            },
        }
    })
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let inputs = inputs();
        let dir = tempfile::tempdir().expect("tempdir");
        let pixels = dir.path().join("pixels.npy");
        let tokens = dir.path().join("tokens.npy");
        let as_f32: Vec<f32> = inputs
            .images
            .pixels
            .iter()
            .map(|value| f32::from(*value))
            .collect();
        npy::write_f32(&pixels, inputs.images.n_images, SIDE * SIDE * 3, &as_f32)
            .expect("write pixels");
        let ids: Vec<f32> = inputs.texts.token_ids.iter().map(|id| *id as f32).collect();
        npy::write_f32(&tokens, inputs.texts.n_texts, CONTEXT_LENGTH, &ids).expect("write tokens");
        let prefix = dir.path().join("hf");
        let model = support::tiny_model();
        let args = [
            "--model".as_ref(),
            model.as_os_str(),
            "--pixels".as_ref(),
            pixels.as_os_str(),
            "--tokens".as_ref(),
            tokens.as_os_str(),
            "--out".as_ref(),
            prefix.as_os_str(),
        ];
        support::run_python(&support::test_script("model_reference.py"), &args);
        let read = |suffix: &str| {
            npy::read_f32(&dir.path().join(format!("hf{suffix}"))).expect("read reference")
        };
        let (_, dim, images) = read(".img_emb.npy");
        let (_, _, texts) = read(".text_emb.npy");
        let (_, _, similarity) = read(".similarity.npy");
        Reference {
            images,
            texts,
            similarity,
            dim,
        }
    })
}

fn embed(precision: Precision, images: ImageBatch, texts: TextBatch) -> (Embeddings, Embeddings) {
    let model = support::tiny_model();
    let backend = BackendThread::spawn(1, move || {
        TorchBackend::load(&model, DeviceSpec::Cpu, precision)
    })
    .expect("load model");
    let images = backend.blocking_embed_images(images).expect("embed images");
    let texts = backend.blocking_embed_texts(texts).expect("embed texts");
    (images, texts)
}

#[test]
fn f32_matches_hugging_face() {
    let inputs = inputs();
    let reference = reference();
    let (images, texts) = embed(Precision::F32, inputs.images.clone(), inputs.texts.clone());
    assert_eq!(images.dim, reference.dim);
    let image_error = support::max_abs_error(&images.values, &reference.images);
    let text_error = support::max_abs_error(&texts.values, &reference.texts);
    let similarity_error =
        support::max_abs_error(&images.similarities(&texts), &reference.similarity);
    eprintln!(
        "model parity f32: max abs error images {image_error:e}, texts {text_error:e}, similarity {similarity_error:e}"
    );
    assert!(image_error <= 1e-4 && text_error <= 1e-4 && similarity_error <= 1e-4);
}

#[test]
fn half_precisions_stay_close_to_hugging_face_f32() {
    let inputs = inputs();
    let reference = reference();
    for precision in [Precision::Bf16, Precision::F16] {
        let (images, texts) = embed(precision, inputs.images.clone(), inputs.texts.clone());
        let image_cosine =
            support::min_row_cosine(&images.values, &reference.images, reference.dim);
        let text_cosine = support::min_row_cosine(&texts.values, &reference.texts, reference.dim);
        let similarity_error =
            support::max_abs_error(&images.similarities(&texts), &reference.similarity);
        eprintln!(
            "model parity {precision:?}: min cosine images {image_cosine:.6}, texts {text_cosine:.6}, similarity max abs error {similarity_error:e}"
        );
        assert!(
            image_cosine >= 0.999 && text_cosine >= 0.999,
            "{precision:?} drifted from f32"
        );
    }
}

#[test]
fn results_do_not_depend_on_the_batch() {
    let inputs = inputs();
    let (images, texts) = embed(Precision::F32, inputs.images.clone(), inputs.texts.clone());
    let per_image = SIDE * SIDE * 3;
    let model = support::tiny_model();
    let backend = BackendThread::spawn(1, move || {
        TorchBackend::load(&model, DeviceSpec::Cpu, Precision::F32)
    })
    .expect("load model");
    let mut worst = 0.0f32;
    for index in [0, 3] {
        let alone = ImageBatch {
            n_images: 1,
            pixels: inputs.images.pixels[index * per_image..(index + 1) * per_image].to_vec(),
        };
        let single = backend.blocking_embed_images(alone).expect("single image");
        worst = worst.max(support::max_abs_error(single.row(0), images.row(index)));
    }
    // Two texts in the other order.
    let rows = |index: usize| {
        inputs.texts.token_ids[index * CONTEXT_LENGTH..(index + 1) * CONTEXT_LENGTH].to_vec()
    };
    let swapped = TextBatch {
        n_texts: 2,
        token_ids: [rows(5), rows(1)].concat(),
    };
    let pair = backend.blocking_embed_texts(swapped).expect("text pair");
    worst = worst.max(support::max_abs_error(pair.row(0), texts.row(5)));
    worst = worst.max(support::max_abs_error(pair.row(1), texts.row(1)));
    eprintln!("batch invariance: max abs difference {worst:e}");
    assert!(worst <= 1e-5, "embeddings depend on the batch by {worst}");
}
