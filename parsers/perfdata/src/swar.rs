//! Byte tests on eight bytes at once ("SIMD within a register") for the reader's scans.
//!
//! Each test sets the high bit of every byte of a little-endian word that passes it, and no
//! other bit. The formulas keep each byte's arithmetic inside that byte (no carries or borrows
//! cross byte lanes), so every lane's answer is exact, not only the first one.

const LOW_SEVEN: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
const ONES: u64 = 0x0101_0101_0101_0101;

/// High bit set in each byte that is zero.
#[inline]
fn zero_bytes(word: u64) -> u64 {
    // (b & 0x7f) + 0x7f has its high bit set iff the low seven bits are not all zero; or-ing
    // `word` adds the byte's own high bit. Neither sum leaves its byte (0x7f + 0x7f = 0xfe).
    !(((word & LOW_SEVEN) + LOW_SEVEN) | word) & HIGH_BITS
}

/// High bit set in each byte below `bound` (`bound <= 0x80`).
#[inline]
fn bytes_below(word: u64, bound: u8) -> u64 {
    let add = ONES * u64::from(0x80 - bound);
    // (b & 0x7f) + (0x80 - bound) reaches 0x80 iff b & 0x7f >= bound; stays below 0x100.
    !(((word & LOW_SEVEN) + add) | word) & HIGH_BITS
}

/// Bytes that may end a field or a value text: everything at or below space (the reading's
/// whitespace and other control bytes; the caller checks which) and `;`.
#[inline]
pub fn whitespace_or_semicolon(word: u64) -> u64 {
    bytes_below(word, b' ' + 1) | zero_bytes(word ^ (ONES * u64::from(b';')))
}

/// Index of the first byte flagged in a mask from the tests above.
#[inline]
pub fn first_byte(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_value_in_every_lane() {
        for lane in 0..8 {
            for byte in 0..=255u8 {
                // Surround the byte with neighbours that stress borrows: 0x00 and 0xff.
                for filler in [0x00u8, 0x41, 0xff] {
                    let mut bytes = [filler; 8];
                    bytes[lane] = byte;
                    let mask = whitespace_or_semicolon(u64::from_le_bytes(bytes));
                    for (i, &b) in bytes.iter().enumerate() {
                        let expected = b <= b' ' || b == b';';
                        assert_eq!(mask >> (i * 8 + 7) & 1 == 1, expected, "{bytes:?} lane {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn first_byte_is_the_lowest_address() {
        let mask = whitespace_or_semicolon(u64::from_le_bytes(*b"ab;d e;g"));
        assert_eq!(first_byte(mask), 2);
        assert_eq!(first_byte(mask & (mask - 1)), 4);
    }
}
