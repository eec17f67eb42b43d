//! OpenAI's CLIP tokenizer: text cleanup, byte-level BPE over the 49,408-entry vocabulary,
//! and the 77-token context with start and end tokens.
//!
//! Reference: <https://github.com/openai/CLIP/blob/main/clip/simple_tokenizer.py> and
//! `clip.tokenize(texts, truncate=True)` in `clip/clip.py`.
//! Vocabulary and merges are read from the checkpoint's Hugging Face `tokenizer.json`, whose
//! BPE model holds OpenAI's vocabulary; the algorithm around them is OpenAI's, not Hugging
//! Face's (`CLIPTokenizer` skips ftfy and HTML unescaping, so it is not the reference).
//! The BPE itself is ours rather than the `tokenizers` crate's: it is ~60 lines, keeps OpenAI's
//! case-insensitive split regex (which `tokenizer.json` loses: "'ſt" splits as `'s`+`t` in
//! OpenAI's code), stops early once 77 tokens are certain, and avoids a C regex dependency.
//! The parity test (tests/parity/tokenizer.rs) measures it against OpenAI's `SimpleTokenizer`.

mod clean;
mod ftfy_tables;
mod mojibake;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

/// Tokens per text, start and end tokens included (OpenAI's `context_length`).
pub const CONTEXT_LENGTH: usize = 77;
const START_TOKEN: &str = "<|startoftext|>";
const END_TOKEN: &str = "<|endoftext|>";
const END_OF_WORD: &str = "</w>";

/// Errors of loading the tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("failed to read {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to parse {path}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("tokenizer file {path} is unusable: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// OpenAI's `SimpleTokenizer` plus `clip.tokenize`.
#[derive(Debug)]
pub struct Tokenizer {
    encoder: HashMap<String, i64>,
    ranks: HashMap<(String, String), usize>,
    byte_encoder: [char; 256],
    start_id: i64,
    end_id: i64,
}

#[derive(Deserialize)]
struct TokenizerJson {
    model: BpeJson,
}

#[derive(Deserialize)]
struct BpeJson {
    vocab: HashMap<String, i64>,
    merges: Vec<MergeJson>,
}

/// `tokenizers` wrote merges as `"a b"` before 0.20 and as `["a", "b"]` since.
#[derive(Deserialize)]
#[serde(untagged)]
enum MergeJson {
    Joined(String),
    Pair(String, String),
}

impl Tokenizer {
    /// Reads the vocabulary and merges of a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
            path: path.to_owned(),
            source,
        })?;
        let json: TokenizerJson =
            serde_json::from_str(&text).map_err(|source| TokenizerError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let invalid = |reason: String| TokenizerError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let mut ranks = HashMap::with_capacity(json.model.merges.len());
        for (rank, merge) in json.model.merges.into_iter().enumerate() {
            let pair = match merge {
                MergeJson::Pair(first, second) => (first, second),
                MergeJson::Joined(joined) => match joined.split_once(' ') {
                    Some((first, second)) => (first.to_owned(), second.to_owned()),
                    None => return Err(invalid(format!("merge {joined:?} is not a pair"))),
                },
            };
            ranks.entry(pair).or_insert(rank);
        }
        let encoder = json.model.vocab;
        let start_id = *encoder
            .get(START_TOKEN)
            .ok_or_else(|| invalid(format!("no {START_TOKEN} in vocab")))?;
        let end_id = *encoder
            .get(END_TOKEN)
            .ok_or_else(|| invalid(format!("no {END_TOKEN} in vocab")))?;
        Ok(Self {
            encoder,
            ranks,
            byte_encoder: bytes_to_unicode(),
            start_id,
            end_id,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// BPE token ids of `text` without start and end tokens (`SimpleTokenizer.encode`).
    pub fn encode(&self, text: &str) -> Vec<i64> {
        self.encode_up_to(text, usize::MAX)
    }

    /// One context row: start, tokens, end, zero padding; too long texts keep their first 76
    /// tokens and end with the end token (`clip.tokenize(..., truncate=True)`).
    pub fn tokenize(&self, text: &str) -> [i64; CONTEXT_LENGTH] {
        let mut row = [0; CONTEXT_LENGTH];
        row[0] = self.start_id;
        // Only the first CONTEXT_LENGTH - 2 tokens can survive truncation.
        let ids = self.encode_up_to(text, CONTEXT_LENGTH - 2);
        let kept = ids.len().min(CONTEXT_LENGTH - 2);
        row[1..=kept].copy_from_slice(&ids[..kept]);
        row[kept + 1] = self.end_id;
        row
    }

    /// Context rows of many texts, flattened to `[n, CONTEXT_LENGTH]`.
    pub fn tokenize_batch<S: AsRef<str>>(&self, texts: &[S]) -> Vec<i64> {
        texts
            .iter()
            .flat_map(|text| self.tokenize(text.as_ref()))
            .collect()
    }

    /// Encodes until at least `limit` ids exist; later words cannot change earlier ids.
    fn encode_up_to(&self, text: &str, limit: usize) -> Vec<i64> {
        static PATTERN: LazyLock<Regex> = LazyLock::new(|| {
            // Case-insensitive like OpenAI's (`re.IGNORECASE`): "'ſ" matches `'s` by case folding.
            Regex::new(r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
                .expect("valid regex")
        });
        let cleaned = clean::whitespace_clean(&clean::basic_clean(text)).to_lowercase();
        let mut ids = Vec::new();
        for word in PATTERN.find_iter(&cleaned) {
            if ids.len() > limit {
                break;
            }
            let word = word.as_str();
            if word == START_TOKEN || word == END_TOKEN {
                ids.push(if word == START_TOKEN {
                    self.start_id
                } else {
                    self.end_id
                });
                continue;
            }
            let symbols: String = word
                .bytes()
                .map(|byte| self.byte_encoder[usize::from(byte)])
                .collect();
            for piece in self.bpe(&symbols) {
                // Every byte symbol and every merge result is in the vocabulary.
                if let Some(&id) = self.encoder.get(&piece) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    /// Repeatedly merges the adjacent pair of lowest rank (OpenAI's `bpe`).
    fn bpe(&self, token: &str) -> Vec<String> {
        let mut word: Vec<String> = token.chars().map(String::from).collect();
        if let Some(last) = word.last_mut() {
            last.push_str(END_OF_WORD);
        }
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|pair| {
                    self.ranks
                        .get(&(pair[0].clone(), pair[1].clone()))
                        .map(|rank| (*rank, pair))
                })
                .min_by_key(|(rank, _)| *rank);
            let Some((_, pair)) = best else { break };
            let (first, second) = (pair[0].clone(), pair[1].clone());
            let mut merged = Vec::with_capacity(word.len());
            let mut index = 0;
            while index < word.len() {
                if index + 1 < word.len() && word[index] == first && word[index + 1] == second {
                    merged.push(format!("{first}{second}"));
                    index += 2;
                } else {
                    merged.push(std::mem::take(&mut word[index]));
                    index += 1;
                }
            }
            word = merged;
        }
        word
    }
}

/// GPT-2's reversible byte-to-character table (`bytes_to_unicode`).
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_extra = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
        table[usize::from(byte)] = if printable {
            char::from(byte)
        } else {
            let character = char::from_u32(next_extra).unwrap_or('\u{fffd}');
            next_extra += 1;
            character
        };
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_matches_gpt2() {
        let table = bytes_to_unicode();
        assert_eq!(table[usize::from(b'a')], 'a');
        assert_eq!(table[0], 'Ā');
        assert_eq!(table[usize::from(b' ')], 'Ġ');
        assert_eq!(table[0xad], '\u{143}');
    }
}
