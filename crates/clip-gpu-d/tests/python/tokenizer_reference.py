"""Writes varied strings and OpenAI's own token ids for them (`clip.tokenize(..., truncate=True)`).

Usage: python tokenizer_reference.py OUT.json [N]
Writes N random strings plus MOJIBAKE_COUNT strings of mojibake.
"""

import json
import random
import sys

import clip
import ftfy
import ftfy.bad_codecs  # noqa: F401 (registers the sloppy codecs)

WORDS = ["a", "photo", "of", "the", "cat", "dog's", "we're", "I'll", "they'd", "you've", "isn't", "HELLO", "World",
         "New-York", "e-mail", "C++", "#hashtag", "@user", "100%", "3.14159", "1,000,000", "2021", "x86_64", "URL:",
         "https://example.com/a?b=c&d=e", "foo_bar", "CamelCase", "ALLCAPS", "don't", "O'Reilly"]
UNICODE = ["café", "naïve", "Straße", "ΟΔΟΣ", "Σίσυφος", "ὀδυσσεύς", "İstanbul", "ıi", "Ǆemal", "Привет", "мир", "日本語の写真",
           "猫", "한국어", "العربية", "עברית", "हिन्दी", "ไทย", "Ελληνικά", "Æsir", "Œuvre", "ﬁne", "ﬂower", "ｆｕｌｌｗｉｄｔｈ",
           "ｶﾀｶﾅ", "①②③", "Ⅻ", "½", "²³", "٣٤٥", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "e\u0301", "n\u0303", "Å", "Å", "ǅ", "ẞ", "ﬀ", "µ", "K"]
EMOJI = ["🙂", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "❤️", "🇩🇪", "🐈", "✨", "🤖", "🧪", "😂😂😂"]
ENTITIES = ["&amp;", "&lt;b&gt;", "&quot;", "&#39;", "&#x27;", "&nbsp;", "&eacute;", "&amp;amp;", "&copy", "&copy;2021", "&EACUTE;",
            "&NTILDE;", "&#8217;", "&#x1F600;", "&#0;", "&#128;", "&#x110000;", "&notin;", "&notit;", "&ampx", "&bogus;", "&#65",
            "&AMP;", "&LT;", "&hellip;", "&mdash;", "&lt;3", "&amp;lt;", "&#150;", "&#xD800;"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u2009", "\u200b", "\x0b", "\x0c", "\x1c", "\x85"]
ODD = ["“quoted”", "‘single’", "«guillemets»", "—", "…", "\u0007", "\ufeff", "\x1b[31mred\x1b[0m", "\x93c1\x94", "\x80", "<tag>",
       "a<b", "'s", "'S", "'LL", "\u00ad", "\u2060", "\ue000", "\U000e0041", "ĳ", "ﬅ", "\u00a0\u00a0", "...", "!!!", "?!", "$5", "€10"]
POOLS = [WORDS, WORDS, UNICODE, EMOJI, ENTITIES, SPACES, ODD]

# Real UTF-8 text that mojibake_strings decodes in the wrong code pages.
PHRASES = ["Café de Flore, Paris", "naïve “quotes” — don’t", "Привет, мир", "Ελληνικά νέα", "Łódź żółć", "İstanbul ğüşö",
           "日本語の写真", "🙂 emoji 👍", "½ price – 20% off", "Crème brûlée", "Straße in Zürich", "São Paulo à noite",
           "Ærøskøbing", "Dvořák’s “New World”", "العربية", "עברית", "हिन्दी", "© 2021 • All rights reserved", "¿Qué tal?",
           "señor", "…and more", "Šibenik", "Kraków", "Smørrebrød"]
WRONG_CODE_PAGES = ["sloppy-windows-1252", "latin-1", "sloppy-windows-1251", "sloppy-windows-1250", "sloppy-windows-1253",
                    "sloppy-windows-1254", "sloppy-windows-1257", "iso-8859-2", "macroman", "cp437"]
MOJIBAKE_COUNT = 60


def make_strings(count, seed=20210501):
    rng = random.Random(seed)
    strings = ["", " ", "a photo of a cat", "a diagram", "a dog", "\n\t ", "<|endoftext|>", "<|startoftext|>hi<|endoftext|>",
               "a " * 200, "supercalifragilisticexpialidocious" * 40, "🙂" * 300, "x" * 5000]
    while len(strings) < count:
        n_parts = rng.choice([1, 2, 3, 5, 8, 13, 40, 120])
        parts = []
        for _ in range(n_parts):
            pool = rng.choice(POOLS)
            parts.append(rng.choice(pool))
            if rng.random() < 0.7:
                parts.append(" ")
        strings.append("".join(parts))
    return strings


def mojibake_strings(count, seed=20240601):
    """UTF-8 text decoded with a single-byte code page, once or twice, sometimes inside clean text or
    with its no-break spaces turned into spaces: what ftfy's `fix_encoding` repairs."""
    rng = random.Random(seed)
    strings = []
    while len(strings) < count:
        text = " ".join(rng.sample(PHRASES, rng.choice([1, 1, 2, 3])))
        for _ in range(rng.choice([1, 1, 1, 2])):
            text = text.encode("utf-8").decode(rng.choice(WRONG_CODE_PAGES))
        if rng.random() < 0.2:
            text = text.replace("\u00a0", " ")
        if rng.random() < 0.3:
            text = f"a photo of {rng.choice(PHRASES)} next to {text}"
        strings.append(text)
    return strings


def main():
    out_path = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    strings = make_strings(count) + mojibake_strings(MOJIBAKE_COUNT)
    rows = clip.tokenize(strings, truncate=True).tolist()
    with open(out_path, "w", encoding="utf-8") as handle:
        # Mark the strings where mojibake repair (ftfy's fix_encoding) changes something, so the test
        # can check that the corpus exercises it.
        json.dump(
            [
                {"text": text, "ids": ids, "mojibake": ftfy.fix_text(text) != ftfy.fix_text(text, fix_encoding=False)}
                for text, ids in zip(strings, rows)
            ],
            handle,
            ensure_ascii=False,
        )


if __name__ == "__main__":
    main()
