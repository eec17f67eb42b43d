//! The shard's optional `NNNNN.tfrecord`: one `tf.train.Example` per kept pair, as the 2021
//! Crawling@Home workers wrote them.
//!
//! Framing of each record: the data's length as a little-endian u64, the masked CRC32C of those
//! 8 bytes, the data, and the masked CRC32C of the data
//! (<https://www.tensorflow.org/tutorials/load_data/tfrecord#tfrecords_format_details>).
//! The data is a protobuf `Example` encoded by hand from `example.proto` and `feature.proto`
//! (<https://github.com/tensorflow/tensorflow/blob/master/tensorflow/core/example/feature.proto>):
//! `Example { Features features = 1 }`, `Features { map<string, Feature> feature = 1 }`,
//! `Feature { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3 } }`,
//! each list a `repeated value = 1` (floats and int64s packed).

use std::io::Write;

use super::KeptPair;

/// One feature's value.
#[derive(Debug, Clone, Copy)]
pub(super) enum Feature<'a> {
    /// A `bytes_list` of one value.
    Bytes(&'a [u8]),
    Floats(&'a [f32]),
    Int64s(&'a [i64]),
}

/// The `Example` of a kept pair; `image_format` is the image's extension in the tar.
pub(super) fn pair_example(key: &str, image_format: &str, pair: &KeptPair) -> Vec<u8> {
    let sample = &pair.sample;
    // Unsigned IDs keep their bit pattern in int64, as in the parquet.
    let sample_id = [sample.sample_id as i64];
    let width = [i64::from(sample.width)];
    let height = [i64::from(sample.height)];
    let similarity = [pair.similarity];
    example(&[
        ("key", Feature::Bytes(key.as_bytes())),
        ("image", Feature::Bytes(&pair.image)),
        ("image_format", Feature::Bytes(image_format.as_bytes())),
        ("caption", Feature::Bytes(sample.alt.as_bytes())),
        ("url", Feature::Bytes(sample.url.as_bytes())),
        ("sample_id", Feature::Int64s(&sample_id)),
        ("similarity", Feature::Floats(&similarity)),
        ("nsfw", Feature::Bytes(pair.nsfw.as_str().as_bytes())),
        ("width", Feature::Int64s(&width)),
        ("height", Feature::Int64s(&height)),
        ("image_embedding", Feature::Floats(&pair.image_embedding)),
        ("text_embedding", Feature::Floats(&pair.text_embedding)),
    ])
}

/// Encodes an `Example` whose map entries come in the given order.
pub(super) fn example(features: &[(&str, Feature<'_>)]) -> Vec<u8> {
    let features_len: usize = features
        .iter()
        .map(|(key, feature)| field_len(entry_len(key, feature)))
        .sum();
    let mut out = Vec::with_capacity(field_len(features_len));
    // Example.features
    out.push(tag(1, LEN));
    put_varint(&mut out, features_len as u64);
    for (key, feature) in features {
        // Features.feature, one map entry { key = 1, value = 2 }.
        out.push(tag(1, LEN));
        put_varint(&mut out, entry_len(key, feature) as u64);
        out.push(tag(1, LEN));
        put_varint(&mut out, key.len() as u64);
        out.extend_from_slice(key.as_bytes());
        out.push(tag(2, LEN));
        put_varint(&mut out, feature_len(feature) as u64);
        let (field, list_len) = list_of(feature);
        out.push(tag(field, LEN));
        put_varint(&mut out, list_len as u64);
        match feature {
            Feature::Bytes(value) => {
                out.push(tag(1, LEN));
                put_varint(&mut out, value.len() as u64);
                out.extend_from_slice(value);
            }
            Feature::Floats(values) if !values.is_empty() => {
                out.push(tag(1, LEN));
                put_varint(&mut out, 4 * values.len() as u64);
                for value in *values {
                    out.extend_from_slice(&value.to_le_bytes());
                }
            }
            Feature::Int64s(values) if !values.is_empty() => {
                out.push(tag(1, LEN));
                put_varint(&mut out, packed_int64_len(values) as u64);
                for value in *values {
                    put_varint(&mut out, *value as u64);
                }
            }
            // An empty packed list is left out, as protobuf encoders do.
            Feature::Floats(_) | Feature::Int64s(_) => {}
        }
    }
    debug_assert_eq!(out.len(), field_len(features_len));
    out
}

/// Appends one framed record.
pub(super) fn write_record(out: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let length = (data.len() as u64).to_le_bytes();
    out.write_all(&length)?;
    out.write_all(&masked_crc(&length).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc(data).to_le_bytes())
}

/// The length-delimited wire type.
const LEN: u8 = 2;

fn tag(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

/// TFRecord's checksum: CRC32C rotated right by 15 bits plus a constant.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The `Feature` field of the list and the list message's length.
fn list_of(feature: &Feature<'_>) -> (u8, usize) {
    match feature {
        Feature::Bytes(value) => (1, field_len(value.len())),
        Feature::Floats([]) => (2, 0),
        Feature::Floats(values) => (2, field_len(4 * values.len())),
        Feature::Int64s([]) => (3, 0),
        Feature::Int64s(values) => (3, field_len(packed_int64_len(values))),
    }
}

fn feature_len(feature: &Feature<'_>) -> usize {
    field_len(list_of(feature).1)
}

fn entry_len(key: &str, feature: &Feature<'_>) -> usize {
    field_len(key.len()) + field_len(feature_len(feature))
}

/// A length-delimited field of `len` bytes: tag, length, bytes.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn packed_int64_len(values: &[i64]) -> usize {
    values.iter().map(|value| varint_len(*value as u64)).sum()
}

fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_check_value() {
        // The CRC-32C (Castagnoli) check value from the CRC catalogue.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn record_framing_is_byte_exact() {
        let mut out = Vec::new();
        write_record(&mut out, b"abc").expect("write");
        // Masked CRCs computed independently with a bitwise CRC-32C in Python.
        let mut expected = vec![3, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(&0x0e49_99b0_u32.to_le_bytes());
        expected.extend_from_slice(b"abc");
        expected.extend_from_slice(&0x21f1_576e_u32.to_le_bytes());
        assert_eq!(out, expected);
    }

    #[test]
    fn example_encoding_matches_a_hand_encoding() {
        let bytes = example(&[
            ("a", Feature::Bytes(b"x")),
            ("f", Feature::Floats(&[1.0])),
            ("i", Feature::Int64s(&[1, -1])),
            ("e", Feature::Floats(&[])),
        ]);
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            0x0a, 0x3a, // Example.features, 58 bytes
            // "a": bytes_list ["x"]
            0x0a, 0x0a, 0x0a, 0x01, b'a', 0x12, 0x05, 0x0a, 0x03, 0x0a, 0x01, b'x',
            // "f": float_list [1.0], packed
            0x0a, 0x0d, 0x0a, 0x01, b'f', 0x12, 0x08, 0x12, 0x06, 0x0a, 0x04, 0x00, 0x00, 0x80, 0x3f,
            // "i": int64_list [1, -1], packed; -1 is a 10-byte varint
            0x0a, 0x14, 0x0a, 0x01, b'i', 0x12, 0x0f, 0x1a, 0x0d, 0x0a, 0x0b, 0x01,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            // "e": an empty float_list
            0x0a, 0x07, 0x0a, 0x01, b'e', 0x12, 0x02, 0x12, 0x00,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn long_values_get_multi_byte_lengths() {
        let image = vec![7u8; 300];
        let bytes = example(&[("image", Feature::Bytes(&image))]);
        // BytesList 3 + 300 = 303 bytes, Feature 3 + 303 = 306, map entry 7 + 3 + 306 = 316,
        // Features 3 + 316 = 319: two-byte varints from 128 on (319 is 0xbf 0x02).
        assert_eq!(&bytes[..3], &[0x0a, 0xbf, 0x02]);
        assert_eq!(bytes.len(), 3 + 319);
        assert_eq!(&bytes[bytes.len() - 300..], &image[..]);
    }
}
