#!/usr/bin/env python3
"""Writes crates/clip-gpu-d/src/tokenizer/ftfy_tables.rs: the tables and regexes of ftfy's
mojibake repair (`fix_encoding`), taken from the installed ftfy so that the Rust port cannot
drift from it by hand.

What it writes:
- the byte-to-character table of each of ftfy's `CHARMAP_ENCODINGS`, decoded by ftfy's own
  codecs (`import ftfy.bad_codecs` registers the sloppy ones), plus Python's strict
  `windows-1252`;
- `BADNESS_RE`, `UTF8_DETECTOR_RE`, `ALTERED_UTF8_RE`, `LOSSY_UTF8_RE`, `C1_CONTROL_RE` in
  the `regex` crate's syntax, and the literal plus look-ahead of `A_GRAVE_WORD_RE`.

Regexes are converted from the parse tree of Python's own `re` parser, not from the text,
so re.VERBOSE (comments and blanks outside classes) and Python escapes need no rules of
ours.
Every character that is not an ASCII letter or digit becomes an escape (`\\x{HEX}`; `\\xHH`
in byte regexes), which keeps the `regex` crate's class operators (`&&`, `--`, `~~`, `[`)
out of play.
`\\s` and `\\w` are spelled out as the code points Python's `re` matches (the `regex` crate's
Unicode classes differ, e.g. on U+001C and on combining marks), and `.` becomes `[^\\n]`.
The regex crate has no look-around: the leading look-behind of `UTF8_DETECTOR_RE` becomes a
separate one-character class and `A_GRAVE_WORD_RE` a literal and a list of refused
continuations; the Rust code applies them.
The same tree is also written out in Python syntax and fuzzed against ftfy's compiled
regexes here, so a conversion bug fails this script rather than the port.

Usage: .venv/bin/python scripts/gen-ftfy-tables.py [OUT.rs]
Runs rustfmt on the output when rustfmt is on PATH, so rerunning leaves no diff.
"""

import importlib.metadata
import os
import random
import re
import re._constants as sre
import re._parser as sre_parse
import shutil
import subprocess
import sys

import ftfy
import ftfy.bad_codecs  # noqa: F401 (registers the sloppy codecs and utf-8-variants)
from ftfy import badness, chardata, fixes

FTFY_VERSION = "6.3.1"
DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "crates", "clip-gpu-d", "src", "tokenizer", "ftfy_tables.rs"
)
MAX_CODE_POINT = 0x10FFFF


# === Regex conversion ===


class Flavor:
    """How one regex syntax spells escapes; the structure is the same for Python and Rust."""

    def __init__(self, rust, is_bytes):
        self.rust = rust
        self.is_bytes = is_bytes

    def escape(self, code):
        if code < 0x80 and chr(code).isalnum():
            return chr(code)
        if self.is_bytes:
            return f"\\x{code:02x}"
        if self.rust:
            return f"\\x{{{code:X}}}"
        return f"\\U{code:08X}"

    def prefix(self):
        # The regex crate matches Unicode scalar values unless told otherwise.
        return "(?-u)" if self.rust and self.is_bytes else ""


def python_category_ranges(category):
    """The code point ranges Python's `re` matches with `\\s` or `\\w` in a str pattern."""
    probe = re.compile({sre.CATEGORY_SPACE: r"\s", sre.CATEGORY_WORD: r"\w"}[category])
    ranges = []
    for code in range(MAX_CODE_POINT + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue  # Rust strings hold no surrogates.
        if probe.fullmatch(chr(code)):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return ranges


CATEGORY_CACHE = {}


def category_ranges(category, flavor):
    if flavor.is_bytes:
        raise ValueError("\\s and \\w in byte regexes are not converted")
    if category not in CATEGORY_CACHE:
        CATEGORY_CACHE[category] = python_category_ranges(category)
    return CATEGORY_CACHE[category]


def class_tokens(items, flavor):
    """The members of a character class (`IN`), as tokens, without the brackets."""
    tokens = []
    for op, av in items:
        if op is sre.NEGATE:
            tokens.append("^")
        elif op is sre.LITERAL:
            tokens.append(flavor.escape(av))
        elif op is sre.RANGE:
            tokens.append(f"{flavor.escape(av[0])}-{flavor.escape(av[1])}")
        elif op is sre.CATEGORY and av in (sre.CATEGORY_SPACE, sre.CATEGORY_WORD):
            for low, high in category_ranges(av, flavor):
                tokens.append(flavor.escape(low) if low == high else f"{flavor.escape(low)}-{flavor.escape(high)}")
        else:
            raise ValueError(f"unsupported class item {op} {av}")
    return tokens


def pattern_tokens(nodes, flavor):
    """A parsed (sub)pattern as a list of tokens; joined, they are the regex."""
    tokens = []
    for op, av in nodes:
        if op is sre.LITERAL:
            tokens.append(flavor.escape(av))
        elif op is sre.IN:
            tokens.append("[")
            tokens.extend(class_tokens(av, flavor))
            tokens.append("]")
        elif op is sre.ANY:
            # Python's `.` without DOTALL.
            tokens.append("[^\\n]")
        elif op is sre.AT and av in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING):
            # Python's `^` without MULTILINE.
            tokens.append("\\A")
        elif op is sre.BRANCH:
            tokens.append("(?:")
            for index, alternative in enumerate(av[1]):
                if index:
                    tokens.append("|")
                tokens.extend(pattern_tokens(alternative, flavor))
            tokens.append(")")
        elif op is sre.SUBPATTERN:
            group, add_flags, del_flags, subpattern = av
            if add_flags or del_flags:
                raise ValueError("inline flags are not converted")
            tokens.append("(?:")
            tokens.extend(pattern_tokens(subpattern, flavor))
            tokens.append(")")
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, subpattern = av
            tokens.append("(?:")
            tokens.extend(pattern_tokens(subpattern, flavor))
            tokens.append(")")
            if high is sre.MAXREPEAT:
                quantifier = {0: "*", 1: "+"}.get(low, f"{{{low},}}")
            elif (low, high) == (0, 1):
                quantifier = "?"
            elif low == high:
                quantifier = f"{{{low}}}"
            else:
                quantifier = f"{{{low},{high}}}"
            tokens.append(quantifier + ("?" if op is sre.MIN_REPEAT else ""))
        else:
            # `$` (end or before a final newline), look-around and back references have no
            # equivalent in the regex crate: refuse rather than guess.
            raise ValueError(f"unsupported regex node {op} {av}")
    return tokens


def parse(compiled):
    return list(sre_parse.parse(compiled.pattern, compiled.flags & re.VERBOSE))


def convert(nodes, is_bytes):
    """The (Rust, Python) spellings of a parsed pattern, as Rust token list and Python string."""
    rust = Flavor(rust=True, is_bytes=is_bytes)
    python = Flavor(rust=False, is_bytes=is_bytes)
    rust_tokens = [rust.prefix()] + pattern_tokens(nodes, rust)
    python_pattern = "".join(pattern_tokens(nodes, python))
    if is_bytes:
        python_pattern = python_pattern.encode("latin-1")
    return [token for token in rust_tokens if token], re.compile(python_pattern)


# === Fuzzing the conversion against ftfy's compiled regexes ===


def pattern_alphabet(nodes, out):
    """Characters worth fuzzing with: every literal and range end of the pattern, plus a few
    from inside each range."""
    for op, av in nodes:
        if op is sre.LITERAL:
            out.add(av)
        elif op is sre.IN:
            for item_op, item_av in av:
                if item_op is sre.LITERAL:
                    out.add(item_av)
                elif item_op is sre.RANGE:
                    low, high = item_av
                    out.update({low, high, (low + high) // 2, min(low + 1, high), max(high - 1, low)})
                    out.update({max(low - 1, 0), min(high + 1, 0xFF if low < 0x100 and high < 0x100 else MAX_CODE_POINT)})
        elif op is sre.BRANCH:
            for alternative in av[1]:
                pattern_alphabet(alternative, out)
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            pattern_alphabet(av[2], out)
        elif op is sre.SUBPATTERN:
            pattern_alphabet(av[3], out)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            pattern_alphabet(av[1], out)
    return out


EXTRA_CHARS = [ord(c) for c in " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2028\u3000_0a9zAZ.?!é²ª\u0301\u0903ß"]


def fuzz_strings(alphabet, is_bytes, seed, count=40000):
    rng = random.Random(seed)
    alphabet = sorted(code for code in alphabet if not 0xD800 <= code <= 0xDFFF)
    if is_bytes:
        alphabet = sorted({code for code in alphabet if code < 0x100} | {0x20, 0x0A, 0x41, 0x3F, 0x1A, 0xA0})
    strings = []
    for _ in range(count):
        codes = [rng.choice(alphabet) for _ in range(rng.randint(1, 9))]
        strings.append(bytes(codes) if is_bytes else "".join(map(chr, codes)))
    return strings


def spans(compiled, text):
    return [match.span() for match in compiled.finditer(text)]


def emulated_spans(main, not_after, text):
    """The search loop the Rust code runs for a pattern with a one-character look-behind."""
    found = []
    position = 0
    while position <= len(text):
        match = main.search(text, position)
        if match is None:
            break
        start = match.start()
        if start > 0 and not_after.fullmatch(text[start - 1]):
            position = start + 1
            continue
        found.append(match.span())
        position = max(match.end(), start + 1)
    return found


MOJIBAKE_SOURCES = ["café", "naïve", "Straße", "don’t", "“quoted”", "…", "—", "€5", "Привет мир", "Ελληνικά",
                    "İstanbul", "Łódź", "日本語", "한국어", "العربية", "हिन्दी", "🙂👍", "½ × ²", "à la", "ñ",
                    "✔ done", " ", "®™©", "Æsir"]


def mojibake_strings(is_bytes, seed, count=20000):
    """Real text decoded in the wrong encodings, once or twice: what the regexes are for."""
    rng = random.Random(seed)
    encodings = list(chardata.CHARMAP_ENCODINGS)
    strings = []
    while len(strings) < count:
        text = " ".join(rng.choice(MOJIBAKE_SOURCES) for _ in range(rng.randint(1, 3)))
        for _ in range(rng.randint(1, 2)):
            text = text.encode("utf-8").decode(rng.choice(encodings))
        if rng.random() < 0.3:
            text = text.replace("\xa0", " ")
        if is_bytes:
            encoding = rng.choice(encodings)
            try:
                strings.append(text.encode(encoding))
            except UnicodeEncodeError:
                continue
        else:
            strings.append(text)
    return strings


def all_pairs(alphabet):
    chars = [chr(code) for code in sorted(alphabet) if not 0xD800 <= code <= 0xDFFF]
    return [first + second for first in chars for second in chars]


def check_texts(texts, original, matches):
    """Raises unless `matches(text)` gives ftfy's spans on every text; returns how many matched."""
    n_matched = 0
    for text in texts:
        expected = spans(original, text)
        if expected != matches(text):
            raise AssertionError(f"conversion of {original.pattern!r} differs on {text!r}")
        n_matched += bool(expected)
    return n_matched


def check_conversion(original, matches, is_bytes, seed):
    alphabet = pattern_alphabet(parse(original), set(EXTRA_CHARS))
    texts = fuzz_strings(alphabet, is_bytes, seed) + mojibake_strings(is_bytes, seed)
    if not is_bytes:
        texts += all_pairs(alphabet)
    n_matched = check_texts(texts, original, matches)
    # A fuzz that never (or always) matches would check nothing.
    assert 0.01 * len(texts) < n_matched < 0.99 * len(texts), (original.pattern[:40], n_matched, len(texts))
    print(f"checked {len(texts)} strings ({n_matched} matching) against {original.pattern[:30]!r}", file=sys.stderr)


# === Tables ===


def decode_table(encoding):
    """The character each byte decodes to; every byte must decode."""
    table = [bytes([byte]).decode(encoding) for byte in range(256)]
    assert all(len(char) == 1 for char in table), encoding
    # `text.encode(encoding)` must be the inverse on exactly the characters that
    # `chardata.possible_encoding` accepts, which is what the Rust side relies on.
    assert len(set(table)) == 256, f"{encoding} decodes two bytes to one character"
    for byte, char in enumerate(table):
        assert char.encode(encoding) == bytes([byte]), (encoding, byte)
    accepted = {code for code in range(MAX_CODE_POINT + 1) if chardata.possible_encoding(chr(code), encoding)}
    assert accepted == {ord(char) for char in table}, f"possible_encoding({encoding}) is not the table"
    return table


def strict_table(encoding):
    table = []
    for byte in range(256):
        try:
            table.append(bytes([byte]).decode(encoding))
        except UnicodeDecodeError:
            table.append(None)
    return table


def rust_char(char):
    code = ord(char)
    if 0x20 <= code < 0x7F and char not in "'\\":
        return f"'{char}'"
    return f"'\\u{{{code:x}}}'"


def rust_bytes(data):
    return 'b"' + "".join(chr(b) if 0x20 <= b < 0x7F and chr(b) not in '"\\' else f"\\x{b:02x}" for b in data) + '"'


def rust_str_const(tokens):
    """`concat!` of raw string chunks, broken only between tokens."""
    chunks = []
    current = ""
    for token in tokens:
        if current and len(current) + len(token) > 80:
            chunks.append(current)
            current = ""
        current += token
    chunks.append(current)
    for chunk in chunks:
        assert '"' not in chunk
    if len(chunks) == 1:
        return f'r"{chunks[0]}"'
    return "concat!(" + ", ".join(f'r"{chunk}"' for chunk in chunks) + ")"


# === Look-around that the Rust code applies itself ===


def split_leading_lookbehind(nodes):
    """`(?<![class]) rest` as (class nodes, rest nodes)."""
    op, av = nodes[0]
    assert op is sre.ASSERT_NOT and av[0] == -1, "UTF8_DETECTOR_RE no longer starts with a look-behind"
    behind = av[1]
    assert len(behind) == 1 and behind[0][0] is sre.IN, "the look-behind is no longer one character class"
    return behind, nodes[1:]


def split_negative_lookahead(nodes):
    """`literal (?!a|b|c)` as (literal bytes, [a, b, c])."""
    *literal, (op, av) = nodes
    assert all(node_op is sre.LITERAL for node_op, _ in literal), "A_GRAVE_WORD_RE no longer starts with a literal"
    assert op is sre.ASSERT_NOT and av[0] == 1, "A_GRAVE_WORD_RE no longer ends with a negative look-ahead"
    (branch_op, branch_av), = av[1]
    assert branch_op is sre.BRANCH
    refused = []
    for alternative in branch_av[1]:
        assert all(node_op is sre.LITERAL for node_op, _ in alternative)
        refused.append(bytes(code for _, code in alternative))
    return bytes(code for _, code in literal), refused


def check_a_grave_word(literal, refused):
    rng = random.Random(7)
    alphabet = [0xC3, 0x20, *b"quelaios"]
    for _ in range(20000):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        ours = bytearray()
        position = 0
        while position < len(data):
            rest = data[position + len(literal):]
            if data.startswith(literal, position) and not any(rest.startswith(word) for word in refused):
                ours += b"\xc3\xa0 "
                position += len(literal)
            else:
                ours.append(data[position])
                position += 1
        assert bytes(ours) == fixes.A_GRAVE_WORD_RE.sub(b"\xc3\xa0 ", data), data


# === Output ===


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    installed = importlib.metadata.version("ftfy")
    if installed != FTFY_VERSION:
        sys.exit(f"ftfy {installed} is installed; this script and the Rust port follow ftfy {FTFY_VERSION}")

    charmaps = [(encoding, decode_table(encoding)) for encoding in chardata.CHARMAP_ENCODINGS]
    windows_1252 = strict_table("windows-1252")
    # `fix_c1_controls` decodes C1 characters as sloppy-windows-1252, which the Rust code
    # reads from the second charmap.
    assert chardata.CHARMAP_ENCODINGS[1] == "sloppy-windows-1252"

    regexes = {}
    for name, compiled, seed in [
        ("BADNESS", badness.BADNESS_RE, 1),
        ("ALTERED_UTF8", chardata.ALTERED_UTF8_RE, 2),
        ("LOSSY_UTF8", chardata.LOSSY_UTF8_RE, 3),
        ("C1_CONTROL", chardata.C1_CONTROL_RE, 4),
    ]:
        is_bytes = isinstance(compiled.pattern, bytes)
        rust_tokens, python_compiled = convert(parse(compiled), is_bytes)
        check_conversion(compiled, lambda text, converted=python_compiled: spans(converted, text), is_bytes, seed)
        regexes[name] = rust_tokens

    behind, detector = split_leading_lookbehind(parse(chardata.UTF8_DETECTOR_RE))
    detector_rust, detector_python = convert(detector, False)
    behind_rust, behind_python = convert(behind, False)
    check_conversion(
        chardata.UTF8_DETECTOR_RE,
        lambda text: emulated_spans(detector_python, behind_python, text),
        False,
        5,
    )
    regexes["UTF8_DETECTOR"] = detector_rust
    regexes["UTF8_DETECTOR_NOT_AFTER"] = behind_rust

    a_grave_literal, a_grave_refused = split_negative_lookahead(parse(fixes.A_GRAVE_WORD_RE))
    check_a_grave_word(a_grave_literal, a_grave_refused)

    docs = {
        "BADNESS": "`badness.BADNESS_RE`: a match means the text looks like mojibake (`is_bad`).",
        "UTF8_DETECTOR": "`chardata.UTF8_DETECTOR_RE` without its leading look-behind, which\n"
        "/// [`UTF8_DETECTOR_NOT_AFTER`] replaces.",
        "UTF8_DETECTOR_NOT_AFTER": "The character class that the look-behind of `UTF8_DETECTOR_RE` refuses\n"
        "/// right before a match.",
        "ALTERED_UTF8": "`chardata.ALTERED_UTF8_RE`, over bytes.",
        "LOSSY_UTF8": "`chardata.LOSSY_UTF8_RE`, over bytes.",
        "C1_CONTROL": "`chardata.C1_CONTROL_RE`.",
    }

    lines = [
        f"//! ftfy {FTFY_VERSION}'s mojibake tables and regexes, generated by `scripts/gen-ftfy-tables.py`",
        "//! from the installed ftfy: do not edit by hand, rerun the script.",
        "//!",
        "//! Regexes are converted from Python's parse tree for the `regex` crate: characters other",
        "//! than ASCII letters and digits are escapes, `\\s` and `\\w` are Python's Unicode classes",
        "//! spelled out, `^` is `\\A`, `.` is `[^\\n]`, and look-around (which the `regex` crate lacks)",
        "//! is split off for `mojibake.rs` to apply.",
        "//! The script fuzzes each conversion against ftfy's compiled regex before writing it.",
        "",
        "/// `chardata.CHARMAP_ENCODINGS` in the order ftfy tries them, each with the character",
        "/// every byte decodes to (ftfy's sloppy codecs fill Windows' unassigned bytes with Latin-1",
        "/// and decode byte 0x1A as U+FFFD).",
        "/// Each table is one-to-one, and a string is in `possible_encoding` exactly when every",
        "/// character is in the table.",
        "pub(super) const CHARMAP_ENCODINGS: [(&str, [char; 256]); 10] = [",
    ]
    assert len(charmaps) == 10
    for encoding, table in charmaps:
        lines.append(f'    ("{encoding}", [{", ".join(rust_char(char) for char in table)}]),')
    lines.append("];")
    lines.append("")
    lines.append("/// Python's strict `windows-1252` decoder: `None` for the bytes it refuses.")
    entries = ", ".join("None" if char is None else f"Some({rust_char(char)})" for char in windows_1252)
    lines.append(f"pub(super) const WINDOWS_1252: [Option<char>; 256] = [{entries}];")
    for name in ["BADNESS", "UTF8_DETECTOR", "UTF8_DETECTOR_NOT_AFTER", "ALTERED_UTF8", "LOSSY_UTF8", "C1_CONTROL"]:
        lines.append("")
        lines.append(f"/// {docs[name]}")
        lines.append(f"pub(super) const {name}: &str = {rust_str_const(regexes[name])};")
    lines.append("")
    lines.append("/// `fixes.A_GRAVE_WORD_RE` is this literal, not followed by any of [`A_GRAVE_WORD_NOT_BEFORE`].")
    lines.append(f"pub(super) const A_GRAVE_WORD: &[u8] = {rust_bytes(a_grave_literal)};")
    lines.append("")
    lines.append("/// The negative look-ahead of `fixes.A_GRAVE_WORD_RE`.")
    lines.append(
        f"pub(super) const A_GRAVE_WORD_NOT_BEFORE: [&[u8]; {len(a_grave_refused)}] = "
        f"[{', '.join(rust_bytes(word) for word in a_grave_refused)}];"
    )
    lines += [
        "",
        "#[cfg(test)]",
        "mod tests {",
        "    use super::*;",
        "",
        "    #[test]",
        "    fn generated_regexes_compile() {",
    ]
    for name in ["BADNESS", "UTF8_DETECTOR", "UTF8_DETECTOR_NOT_AFTER", "C1_CONTROL"]:
        lines.append(f'        regex::Regex::new({name}).expect("{name}");')
    for name in ["ALTERED_UTF8", "LOSSY_UTF8"]:
        lines.append(f'        regex::bytes::Regex::new({name}).expect("{name}");')
    lines += ["    }", "}", ""]

    with open(out_path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    rustfmt = shutil.which("rustfmt")
    if rustfmt:
        subprocess.run([rustfmt, "--edition", "2024", out_path], check=True)
    else:
        print("warning: rustfmt not found; run `cargo fmt -p clip-gpu-d`", file=sys.stderr)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
