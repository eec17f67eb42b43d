//! The member reader on damaged, split and oversized input, both decoders against each other.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("write to vec");
    encoder.finish().expect("finish gzip")
}

fn read_all(bytes: &[u8], cap: usize) -> Vec<(Member, Vec<u8>)> {
    let mut reader = MemberReader::new(bytes);
    let mut members = Vec::new();
    while let Some(member) = reader.next_member(cap).expect("slice reads") {
        members.push((member, reader.output().to_vec()));
    }
    members
}

#[test]
fn members_damage_and_resync() {
    let big: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let mut corrupt = gzip(b"will be damaged, long enough to damage in the middle of it");
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    let truncated = gzip(b"cut short");
    type Case<'a> = (Vec<u8>, usize, Vec<(Member, &'a [u8])>);
    let cases: Vec<Case<'_>> = vec![
        (
            [gzip(b"one"), gzip(b"two")].concat(),
            100,
            vec![(Member::Complete, b"one"), (Member::Complete, b"two")],
        ),
        (
            [gzip(&big), gzip(b"after")].concat(),
            1000,
            vec![(Member::TooLarge, b""), (Member::Complete, b"after")],
        ),
        (
            [b"junk".to_vec(), gzip(b"ok")].concat(),
            100,
            vec![(Member::Garbage, b""), (Member::Complete, b"ok")],
        ),
        (
            [corrupt, gzip(b"next")].concat(),
            100,
            vec![(Member::Corrupt, b""), (Member::Complete, b"next")],
        ),
        (
            [gzip(b"first"), truncated[..truncated.len() - 5].to_vec()].concat(),
            100,
            vec![(Member::Complete, b"first"), (Member::Truncated, b"")],
        ),
        (Vec::new(), 100, vec![]),
    ];
    for (input, cap, expected) in cases {
        let got = read_all(&input, cap);
        // A member damaged mid-stream may leave its tail behind as garbage.
        let got: Vec<(Member, &[u8])> = got
            .iter()
            .enumerate()
            .filter(|(index, (member, _))| {
                !(*member == Member::Garbage && *index > 0 && got[index - 1].0 == Member::Corrupt)
            })
            .map(|(_, pair)| pair)
            .map(|(member, out)| {
                let out: &[u8] = if *member == Member::Complete {
                    out
                } else {
                    b""
                };
                (*member, out)
            })
            .collect();
        assert_eq!(got, expected);
    }
    let whole = read_all(&gzip(&big), usize::MAX);
    assert_eq!(whole[0].1, big);
}

/// A reader that hands out its bytes a few at a time, like a slow socket.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn one_call_and_streaming_decoders_agree() {
    // Text-like members of many sizes, one with a file name in its header, one whose output
    // is larger than the one-call scratch space, one longer (compressed) than the input buffer.
    let mut state = 0x2545_f491_u32;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                b"abcdefgh {}\":,/01234"[(state % 20) as usize]
            })
            .collect()
    };
    let mut payloads: Vec<Vec<u8>> = (0..200).map(|i| noise(1 + i * 97 % 20_000)).collect();
    payloads.push(vec![b'x'; WHOLE_OUTPUT + 10]);
    payloads.push(noise(INPUT_BUFFER * 2));
    payloads.push(b"last".to_vec());
    let mut file = Vec::new();
    for (index, payload) in payloads.iter().enumerate() {
        if index == 7 {
            let mut named = flate2::GzBuilder::new()
                .filename("record.json")
                .write(Vec::new(), Compression::fast());
            named.write_all(payload).expect("write to vec");
            file.extend(named.finish().expect("finish gzip"));
        } else {
            file.extend(gzip(payload));
        }
    }
    for chunk in [usize::MAX, 4096, 7] {
        let mut reader = MemberReader::new(Trickle(&file, chunk));
        for (index, payload) in payloads.iter().enumerate() {
            let member = reader.next_member(usize::MAX).expect("reads");
            assert_eq!(
                member,
                Some(Member::Complete),
                "member {index}, chunk {chunk}"
            );
            assert!(
                reader.output() == &payload[..],
                "member {index} differs, chunk {chunk}"
            );
        }
        assert_eq!(reader.next_member(usize::MAX).expect("reads"), None);
        assert_eq!(reader.compressed_bytes(), file.len() as u64);
        let total: usize = payloads.iter().map(Vec::len).sum();
        assert_eq!(reader.decompressed_bytes(), total as u64);
        // The two oversized members were streamed, everything else took one call.
        assert_eq!(
            reader.whole_members(),
            payloads.len() as u64 - 2,
            "chunk {chunk}"
        );
    }
}

#[test]
fn one_call_decoder_leaves_garbage_after_a_member_to_the_stream() {
    let input = [gzip(b"kept"), b"junk".to_vec(), gzip(b"next")].concat();
    let mut reader = MemberReader::new(&input[..]);
    let mut got = Vec::new();
    while let Some(member) = reader.next_member(100).expect("slice reads") {
        got.push((
            member,
            String::from_utf8_lossy(reader.output()).into_owned(),
        ));
    }
    let expected = [
        (Member::Complete, "kept"),
        (Member::Garbage, ""),
        (Member::Complete, "next"),
    ]
    .map(|(member, text)| (member, text.to_owned()));
    assert_eq!(got, expected);
    assert_eq!(
        reader.whole_members(),
        1,
        "only the last member ends at magic or eof"
    );
}

#[test]
fn the_cap_is_exact_on_the_streaming_path() {
    // Above the one-call decoder's output space, so every member here is streamed; not a power
    // of two, so no buffer growth step lands on it by chance.
    let cap = WHOLE_OUTPUT + 100_003;
    let sizes = [
        (cap - 1, Member::Complete),
        (cap, Member::Complete),
        (cap + 1, Member::TooLarge),
        (cap + 100_000, Member::TooLarge),
        (2 * cap, Member::TooLarge),
    ];
    // A highly compressible payload read at once (one inflate call can fill any output space),
    // and a noisy one arriving in 4 KiB reads (many calls, each ending anywhere).
    let mut state = 0x9e37_79b9_u32;
    let mut noise = move |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                b"abcdefgh {}\":,/01234"[(state % 20) as usize]
            })
            .collect()
    };
    for (n_bytes, expected) in sizes {
        for (payload, chunk) in [(vec![b'x'; n_bytes], usize::MAX), (noise(n_bytes), 4096)] {
            let file = [gzip(&payload), gzip(b"after")].concat();
            {
                let mut reader = MemberReader::new(Trickle(&file, chunk));
                let member = reader.next_member(cap).expect("reads");
                assert_eq!(member, Some(expected), "{n_bytes} bytes, chunk {chunk}");
                if expected == Member::Complete {
                    assert!(reader.output() == &payload[..], "{n_bytes} bytes differ");
                } else {
                    assert!(reader.output().is_empty());
                }
                assert!(
                    reader.streamed.capacity() <= cap + 1,
                    "{n_bytes} bytes: buffer grew to {}",
                    reader.streamed.capacity()
                );
                assert_eq!(reader.whole_members(), 0, "{n_bytes} bytes streamed");
                assert_eq!(
                    reader.next_member(cap).expect("reads"),
                    Some(Member::Complete)
                );
                assert_eq!(reader.output(), b"after");
            }
        }
    }
}

#[test]
fn the_cap_is_exact_below_the_one_call_output_space() {
    // The one-call decoder has exactly `cap` bytes of room here, so a longer member is streamed.
    let cap = 100_003;
    for (n_bytes, expected) in [(cap, Member::Complete), (cap + 1, Member::TooLarge)] {
        let payload = vec![b'y'; n_bytes];
        let got = read_all(&gzip(&payload), cap);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, expected, "{n_bytes} bytes");
    }
}
