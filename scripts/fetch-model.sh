#!/usr/bin/env bash
# Downloads OpenAI CLIP ViT-B/32 in the Hugging Face layout (openai/clip-vit-base-patch32)
# from the Hugging Face hub into the folder where clip-gpu-d looks by default, and verifies
# every file against the checksum the hub itself publishes. Needs the Internet (it cannot run
# on the development or CI machines, which reach only package registries).
#
# Usage: scripts/fetch-model.sh [DEST_DIR]
# Env:   CLIP_MODEL_DIR       destination (default: ~/.cache/cah/clip-vit-base-patch32, the
#                             default of `clip-gpu-d --model`)
#        CLIP_MODEL_REPO      hub repository (default: openai/clip-vit-base-patch32)
#        CLIP_MODEL_REVISION  branch, tag or commit (default: main); pin a commit for fleets
#        HF_ENDPOINT          hub URL (default: https://huggingface.co)
#
# Verification: no checksums of these files are recorded in this repository's reference
# material, so each file is checked against the hub's own headers on the unredirected
# `resolve` response, fetched separately from the body:
#   - LFS files (model.safetensors): `X-Linked-ETag` is the sha256 of the content;
#     `X-Linked-Size` its size.
#   - plain git files (config.json, tokenizer.json, ...): `ETag` is the git blob id,
#     sha1("blob <size>\0" + content), recomputed here.
# The commit the files came from (`X-Repo-Commit`) is written to DEST/REVISION.
# Files are downloaded into DEST.partial and moved into DEST only when all of them verify.
set -euo pipefail

repo="${CLIP_MODEL_REPO:-openai/clip-vit-base-patch32}"
revision="${CLIP_MODEL_REVISION:-main}"
endpoint="${HF_ENDPOINT:-https://huggingface.co}"
dest="${1:-${CLIP_MODEL_DIR:-$HOME/.cache/cah/clip-vit-base-patch32}}"
files=(config.json model.safetensors tokenizer.json tokenizer_config.json vocab.json merges.txt special_tokens_map.json preprocessor_config.json)

for tool in curl sha256sum sha1sum; do
    command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 1; }
done

partial="$dest.partial"
rm -rf "$partial"
mkdir -p "$partial"
commit=""

header() { # header NAME FILE: the value of header NAME (case-insensitive), quotes stripped
    grep -i "^$1:" "$2" | tail -n 1 | cut -d: -f2- | tr -d ' \r"' | sed 's/^W\///'
}

for file in "${files[@]}"; do
    url="$endpoint/$repo/resolve/$revision/$file"
    headers="$partial/.$file.headers"
    # The first response (no -L) carries the hub's metadata; a redirect points to the CDN.
    curl --fail --silent --show-error --head --proto '=https' "$url" -o /dev/null -D "$headers"
    echo "downloading $file"
    curl --fail --silent --show-error --location --proto '=https' --retry 3 -o "$partial/$file" "$url"
    linked_etag="$(header x-linked-etag "$headers")"
    etag="$(header etag "$headers")"
    file_commit="$(header x-repo-commit "$headers")"
    if [[ -n "$file_commit" ]]; then
        if [[ -n "$commit" && "$commit" != "$file_commit" ]]; then
            echo "error: $file comes from commit $file_commit, earlier files from $commit; pin CLIP_MODEL_REVISION" >&2
            exit 1
        fi
        commit="$file_commit"
    fi
    if [[ "$linked_etag" =~ ^[0-9a-f]{64}$ ]]; then
        actual="$(sha256sum "$partial/$file" | cut -d' ' -f1)"
        expected="$linked_etag"
        kind="sha256"
        size="$(header x-linked-size "$headers")"
        if [[ -n "$size" && "$size" != "$(stat -c %s "$partial/$file")" ]]; then
            echo "error: $file has $(stat -c %s "$partial/$file") bytes, the hub says $size" >&2
            exit 1
        fi
    elif [[ "$etag" =~ ^[0-9a-f]{40}$ ]]; then
        actual="$( { printf 'blob %s\0' "$(stat -c %s "$partial/$file")"; cat "$partial/$file"; } | sha1sum | cut -d' ' -f1)"
        expected="$etag"
        kind="git blob sha1"
    else
        echo "error: the hub sent no usable checksum for $file (ETag '$etag', X-Linked-ETag '$linked_etag')" >&2
        exit 1
    fi
    if [[ "$actual" != "$expected" ]]; then
        echo "error: $file $kind is $actual, the hub says $expected" >&2
        exit 1
    fi
    echo "verified $file ($kind $actual)"
    rm -f "$headers"
done

echo "${commit:-$revision}" > "$partial/REVISION"
rm -rf "$dest"
mv "$partial" "$dest"
echo "model ready in $dest (revision ${commit:-$revision}); run: clip-gpu-d embed --model $dest ..."
