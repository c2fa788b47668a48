//! nix32, the base-32 encoding Nix uses for store path hashes and NAR hashes.
//!
//! Takes bytes and gives text ([`encode`]), or takes text and gives bytes
//! ([`decode`], [`decode_fixed`]).
//!
//! Rules (reference §1.4, Nix `base-nix-32.cc`):
//! - alphabet `0123456789abcdfghijklmnpqrsvwxyz` (no `e`, `o`, `u`, `t`);
//! - `n` bytes encode to `(n*8-1)/5+1` characters;
//! - the bytes are read as one *little-endian* integer and written out as
//!   5-bit digits from the most significant down, so the first character
//!   comes from the last byte.
//!
//! Decoding accepts only canonical strings: a string whose length is not the
//! encoded length of any byte count, or whose first character carries bits
//! above the top byte, is rejected (as tvix does). Hence `decode` and
//! `encode` are inverse bijections, which the fuzz target checks.

use std::fmt;

/// The 32 characters of the nix32 alphabet, in digit order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// `INVALID` marks bytes that are not in the alphabet.
const INVALID: u8 = 0xff;

/// Maps an ASCII byte to its digit value, or [`INVALID`].
#[allow(clippy::indexing_slicing)] // const evaluation: out of bounds fails the build
const DECODE_TABLE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Returns the digit value of `c`, or `None` if `c` is not in the alphabet.
#[inline]
pub(crate) fn digit(c: u8) -> Option<u8> {
    let d = DECODE_TABLE.get(usize::from(c)).copied().unwrap_or(INVALID);
    if d == INVALID { None } else { Some(d) }
}

/// Returns true if `c` is one of the 32 nix32 characters.
#[inline]
pub fn is_nix32_char(c: u8) -> bool {
    digit(c).is_some()
}

/// What is wrong with a string that is not canonical nix32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nixbase32ErrorKind {
    /// A character outside the nix32 alphabet.
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the input.
        pos: usize,
    },
    /// No byte count encodes to this many characters (valid lengths are
    /// 0, 2, 4, 5, 7, 8, 10, …).
    InvalidLength {
        /// Length of the input in bytes.
        len: usize,
    },
    /// [`decode_fixed`] was asked for a different number of bytes.
    WrongLength {
        /// Characters needed for the requested byte count.
        expected: usize,
        /// Length of the input in bytes.
        got: usize,
    },
    /// The first character sets bits above the most significant byte.
    NonCanonical,
}

/// Error for text that is not canonical nix32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct Nixbase32Error {
    /// What exactly is wrong.
    pub kind: Nixbase32ErrorKind,
}

impl fmt::Display for Nixbase32ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Nixbase32ErrorKind::InvalidChar { ch, pos } => write!(
                f,
                "invalid nix32 character {ch:?} at position {pos} (alphabet is 0-9 and a-z without e, o, u, t)"
            ),
            Nixbase32ErrorKind::InvalidLength { len } => {
                write!(f, "{len} characters is not a valid nix32 length")
            }
            Nixbase32ErrorKind::WrongLength { expected, got } => {
                write!(f, "expected {expected} nix32 characters, got {got}")
            }
            Nixbase32ErrorKind::NonCanonical => write!(
                f,
                "non-canonical nix32: the first character has bits set above the top byte"
            ),
        }
    }
}

impl Nixbase32Error {
    fn new(kind: Nixbase32ErrorKind) -> Self {
        Nixbase32Error { kind }
    }
}

/// Number of nix32 characters that encode `nbytes` bytes: `(n*8-1)/5+1`, and 0
/// for 0 bytes.
pub const fn encoded_len(nbytes: usize) -> usize {
    if nbytes == 0 {
        0
    } else {
        (nbytes * 8 - 1) / 5 + 1
    }
}

/// Number of bytes `nchars` nix32 characters decode to, if `nchars` is a valid
/// encoded length.
pub const fn decoded_len(nchars: usize) -> Option<usize> {
    let n = nchars * 5 / 8;
    if encoded_len(n) == nchars {
        Some(n)
    } else {
        None
    }
}

/// Encodes `bytes` as nix32.
pub fn encode(bytes: &[u8]) -> String {
    let mut buf = vec![0u8; encoded_len(bytes.len())];
    encode_to_slice(bytes, &mut buf);
    // The buffer holds only alphabet characters, which are ASCII.
    String::from_utf8(buf).unwrap_or_default()
}

/// Appends the nix32 encoding of `bytes` to `out` (no temporary allocation
/// for inputs up to 40 bytes, which covers every hash Nix uses).
pub fn encode_into(bytes: &[u8], out: &mut String) {
    let len = encoded_len(bytes.len());
    let mut stack = [0u8; 64];
    match stack.get_mut(..len) {
        Some(buf) => {
            encode_to_slice(bytes, buf);
            out.push_str(std::str::from_utf8(buf).unwrap_or_default());
        }
        None => out.push_str(&encode(bytes)),
    }
}

/// Writes the nix32 encoding of `bytes` into `out`, whose length must be
/// `encoded_len(bytes.len())`; extra room is left untouched, missing room
/// truncates (from the most significant end). No allocation.
pub fn encode_to_slice(bytes: &[u8], out: &mut [u8]) {
    // Store path hashes (20 bytes) and SHA-256 digests (32 bytes) are what Nix encodes:
    // a loop of compile-time length, which the compiler unrolls.
    if let (Ok(b), Some(o)) = (<&[u8; 20]>::try_from(bytes), out.get_mut(..32)) {
        return encode_array(b, o);
    }
    if let (Ok(b), Some(o)) = (<&[u8; 32]>::try_from(bytes), out.get_mut(..52)) {
        return encode_array(b, o);
    }
    // Every 5 bytes (from the least significant, i.e. the start) become 8
    // characters (at the end of the output); the last, shorter chunk becomes
    // the first characters.
    let mut end = encoded_len(bytes.len()).min(out.len());
    for chunk in bytes.chunks(5) {
        let mut word = [0u8; 8];
        for (w, b) in word.iter_mut().zip(chunk) {
            *w = *b;
        }
        let mut v = u64::from_le_bytes(word);
        let nchars = encoded_len(chunk.len());
        for _ in 0..nchars {
            if end == 0 {
                return;
            }
            end -= 1;
            if let Some(slot) = out.get_mut(end) {
                *slot = ALPHABET.get((v & 31) as usize).copied().unwrap_or(b'0');
            }
            v >>= 5;
        }
    }
}

/// `encode_to_slice` for `N` bytes into exactly `encoded_len(N)` characters: character
/// `n` from the end is bits `5n..5n+5` of the little-endian number `bytes`.
#[inline]
fn encode_array<const N: usize>(bytes: &[u8; N], out: &mut [u8]) {
    let len = out.len();
    for (n, slot) in out.iter_mut().rev().enumerate().take(len) {
        *slot = digit_from_end(bytes, n);
    }
}

/// The character `n` places from the end of the nix32 text of `bytes`: bits `5n..5n+5`
/// of the little-endian number `bytes` (Nix's bit loop). A text's first characters, say,
/// without encoding the rest.
#[inline]
pub fn digit_from_end(bytes: &[u8], n: usize) -> u8 {
    let (i, shift) = (n * 5 / 8, n * 5 % 8);
    let lo = u16::from(bytes.get(i).copied().unwrap_or(0));
    let hi = u16::from(bytes.get(i + 1).copied().unwrap_or(0));
    let digit = ((lo | hi << 8) >> shift) & 31;
    ALPHABET.get(usize::from(digit)).copied().unwrap_or(b'0')
}

/// Decodes canonical nix32 into `out`, whose length must be
/// `decoded_len(s.len())`.
#[inline]
fn decode_into(s: &[u8], out: &mut [u8]) -> Result<(), Nixbase32Error> {
    // Fast path for the lengths Nix uses (32 and 52 characters): map all
    // characters to digits in one branch-free loop that the compiler
    // vectorizes, then pack. About twice as fast as a table lookup per
    // character, and store path hashes are most of what a narinfo holds.
    let mut digits = [0u8; 64];
    match digits.get_mut(..s.len()) {
        Some(d) => {
            if !to_digits(s, d) {
                return Err(first_invalid_char(s));
            }
            pack_digits(d, out)
        }
        None => decode_into_table(s, out),
    }
}

/// Writes the digit value of each character of `s` into `d`; false if any
/// character is not in the alphabet. Branch-free so that it vectorizes, with
/// signed byte comparisons only (one SSE2 instruction each; bytes >= 0x80 are
/// negative, so below every bound).
#[inline(always)]
fn to_digits(s: &[u8], d: &mut [u8]) -> bool {
    let mut bad = false;
    for (o, &c) in d.iter_mut().zip(s) {
        let x = c.cast_signed();
        let lower = x > 0x60;
        let is_digit = (x > 0x2f) & (x < 0x3a);
        let is_letter = lower & (x < 0x7b);
        let removed = (c == b'e') | (c == b'o') | (c == b't') | (c == b'u');
        // '0'..='9' are 0..=9, 'a' is 10, and each letter after a removed
        // one (e, o, and t u together) is one (two) lower.
        *o = c
            .wrapping_sub(b'0')
            .wrapping_sub(39 * u8::from(lower))
            .wrapping_sub(u8::from(x > 0x65))
            .wrapping_sub(u8::from(x > 0x6f))
            .wrapping_sub(2 * u8::from(x > 0x75));
        bad |= !(is_digit | (is_letter & !removed));
    }
    !bad
}

/// Packs 8 digits (most significant first) into a 40-bit number.
#[inline(always)]
fn pack8(d: [u8; 8]) -> u64 {
    let x = u64::from_le_bytes(d);
    let p = ((x & 0x00ff_00ff_00ff_00ff) << 5) | ((x >> 8) & 0x00ff_00ff_00ff_00ff);
    let q = ((p & 0x0000_ffff_0000_ffff) << 10) | ((p >> 16) & 0x0000_ffff_0000_ffff);
    ((q & 0xffff_ffff) << 20) | (q >> 32)
}

/// Packs digits (each < 32) into bytes: every 8 digits from the end give 5
/// bytes from the start; a final, shorter group gives the top bytes and must
/// not carry bits above them.
#[inline(always)]
fn pack_digits(d: &[u8], out: &mut [u8]) -> Result<(), Nixbase32Error> {
    let mut groups = d.rchunks_exact(8);
    let mut outs = out.chunks_mut(5);
    for (group, o) in (&mut groups).zip(&mut outs) {
        let v = pack8(<[u8; 8]>::try_from(group).unwrap_or_default());
        for (o, b) in o.iter_mut().zip(v.to_le_bytes()) {
            *o = b;
        }
    }
    let partial = groups.remainder();
    if !partial.is_empty() {
        let v = partial
            .iter()
            .fold(0u64, |v, &digit| (v << 5) | u64::from(digit));
        let o = outs.next().unwrap_or_default();
        for (o, b) in o.iter_mut().zip(v.to_le_bytes()) {
            *o = b;
        }
        if (v >> (o.len() * 8)) != 0 {
            return Err(Nixbase32Error::new(Nixbase32ErrorKind::NonCanonical));
        }
    }
    Ok(())
}

/// Decoding with one table lookup per character, for long inputs.
fn decode_into_table(s: &[u8], out: &mut [u8]) -> Result<(), Nixbase32Error> {
    // Invalid characters map to 0xff, whose top bit no digit (< 32) has, so
    // one OR detects them without branching.
    let mut seen = 0u8;
    let mut digits = Vec::with_capacity(s.len());
    for &c in s {
        let d = DECODE_TABLE.get(usize::from(c)).copied().unwrap_or(INVALID);
        seen |= d;
        digits.push(d & 31);
    }
    if seen & 0x80 != 0 {
        return Err(first_invalid_char(s));
    }
    pack_digits(&digits, out)
}

#[cold]
fn first_invalid_char(s: &[u8]) -> Nixbase32Error {
    // `s` came from a &str, so re-decode it as UTF-8 to name the character.
    let text = String::from_utf8_lossy(s);
    for (pos, ch) in text.char_indices() {
        if !ch.is_ascii() || !is_nix32_char(ch as u8) {
            return Nixbase32Error::new(Nixbase32ErrorKind::InvalidChar { ch, pos });
        }
    }
    Nixbase32Error::new(Nixbase32ErrorKind::InvalidChar { ch: '?', pos: 0 })
}

/// Decodes canonical nix32 text.
///
/// # Errors
///
/// Fails if `s` contains a character outside the alphabet, has a length that
/// no byte count encodes to, or is not canonical (bits set above the top byte).
pub fn decode(s: &str) -> Result<Vec<u8>, Nixbase32Error> {
    let n = decoded_len(s.len()).ok_or(Nixbase32Error::new(Nixbase32ErrorKind::InvalidLength {
        len: s.len(),
    }))?;
    let mut out = vec![0u8; n];
    decode_into(s.as_bytes(), &mut out)?;
    Ok(out)
}

/// Decodes canonical nix32 text of exactly `encoded_len(N)` characters into
/// `N` bytes, without allocating.
///
/// # Errors
///
/// Fails if `s` is not `encoded_len(N)` characters long, contains a character
/// outside the alphabet, or is not canonical.
#[inline]
pub fn decode_fixed<const N: usize>(s: &str) -> Result<[u8; N], Nixbase32Error> {
    let expected = encoded_len(N);
    if s.len() != expected {
        return Err(Nixbase32Error::new(Nixbase32ErrorKind::WrongLength {
            expected,
            got: s.len(),
        }));
    }
    let mut out = [0u8; N];
    // Store path hashes (20 bytes) and SHA-256 digests (32 bytes) get a
    // version with a compile-time length, which vectorizes completely.
    if N == 20
        && let Ok(chars) = <&[u8; 32]>::try_from(s.as_bytes())
    {
        decode_array(chars, &mut out)?;
    } else if N == 32
        && let Ok(chars) = <&[u8; 52]>::try_from(s.as_bytes())
    {
        decode_array(chars, &mut out)?;
    } else {
        decode_into(s.as_bytes(), &mut out)?;
    }
    Ok(out)
}

/// Decodes the 32 characters of a store path hash; `None` if one is not in
/// the alphabet. The fast path of the narinfo parser.
#[inline(always)]
pub(crate) fn decode_hash_chars(s: &[u8; 32]) -> Option<[u8; 20]> {
    let mut digits = [0u8; 32];
    if !to_digits(s, &mut digits) {
        return None;
    }
    // 32 characters are exactly 160 bits (never non-canonical): four groups
    // of 8 characters, the last group giving the first 5 bytes.
    let [d0, d1, d2, d3] = split4(digits);
    let mut out = [0u8; 20];
    for (o, group) in out.chunks_exact_mut(5).zip([d3, d2, d1, d0]) {
        o.copy_from_slice(pack8(group).to_le_bytes().get(..5)?);
    }
    Some(out)
}

/// Decodes the 52 characters of a SHA-256 digest; `None` if one is not in
/// the alphabet or the text is not canonical. The fast path of the narinfo
/// parser.
#[inline]
pub(crate) fn decode_digest_chars(s: &[u8; 52]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    decode_array(s, &mut out).ok()?;
    Some(out)
}

/// Splits 32 bytes into four arrays of 8.
#[inline(always)]
fn split4(d: [u8; 32]) -> [[u8; 8]; 4] {
    let mut out = [[0u8; 8]; 4];
    for (o, chunk) in out.iter_mut().zip(d.chunks_exact(8)) {
        o.copy_from_slice(chunk);
    }
    out
}

/// [`decode_into`] for a fixed number of characters.
#[inline(always)]
fn decode_array<const L: usize>(s: &[u8; L], out: &mut [u8]) -> Result<(), Nixbase32Error> {
    let mut digits = [0u8; L];
    if !to_digits(s, &mut digits) {
        return Err(first_invalid_char(s));
    }
    pack_digits(&digits, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn to_digits_agrees_with_the_table_for_every_byte() {
        // All 256 bytes, 32 at a time (the vectorized width of a store path
        // hash) and one at a time.
        let bytes: Vec<u8> = (0..=255).collect();
        for chunk in bytes.chunks(32) {
            for c in chunk {
                let mut d = [0u8; 1];
                let want = DECODE_TABLE[usize::from(*c)];
                assert_eq!(to_digits(&[*c], &mut d), want != INVALID, "{c:#x}");
                if want != INVALID {
                    assert_eq!(d[0], want, "{c:#x}");
                }
            }
            let mut d = [0u8; 32];
            let all_valid = chunk
                .iter()
                .all(|&c| DECODE_TABLE[usize::from(c)] != INVALID);
            assert_eq!(to_digits(chunk, &mut d), all_valid);
        }
        let mut d = [0u8; 32];
        assert!(to_digits(&ALPHABET[..], &mut d));
        assert_eq!(d.to_vec(), (0..32).collect::<Vec<u8>>());
    }

    #[test]
    fn vectors() {
        assert_eq!(encode(&[0x1f]), "0z");
        assert_eq!(decode("0z").unwrap(), vec![0x1f]);
        let b = hex("8a12321522fd91efbd60ebb2481af88580f61600");
        assert_eq!(encode(&b), "00bgd045z0d4icpbc2yyz4gx48ak44la");
        assert_eq!(
            decode_fixed::<20>("00bgd045z0d4icpbc2yyz4gx48ak44la").unwrap()[..],
            b[..]
        );
        assert_eq!(encode(&[]), "");
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
    }

    /// Reference implementation: the bit loop from Nix's base-nix-32.cc.
    fn encode_reference(bytes: &[u8]) -> String {
        let len = encoded_len(bytes.len());
        let mut s = String::new();
        for n in (0..len).rev() {
            let b = n * 5;
            let i = b / 8;
            let j = b % 8;
            let lo = bytes[i] as u32 >> j;
            let hi = if i + 1 < bytes.len() {
                (bytes[i + 1] as u32) << (8 - j)
            } else {
                0
            };
            s.push(ALPHABET[((lo | hi) & 0x1f) as usize] as char);
        }
        s
    }

    #[test]
    fn matches_nix_bit_loop() {
        for n in 0..70usize {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(encode(&bytes), encode_reference(&bytes), "n={n}");
        }
    }

    #[test]
    fn lengths() {
        assert_eq!(encoded_len(20), 32);
        assert_eq!(encoded_len(32), 52);
        let valid: Vec<usize> = (0..12).filter(|&l| decoded_len(l).is_some()).collect();
        assert_eq!(valid, vec![0, 2, 4, 5, 7, 8, 10]);
    }

    #[test]
    fn rejects_non_canonical() {
        // 1 byte = 8 bits in 2 chars = 10 bits; the top 2 bits must be zero.
        // "0z" = 0x1f, "7z" = 0xff, "8z" would set bit 8.
        assert_eq!(decode("7z").unwrap(), vec![0xff]);
        let e = decode("8z").unwrap_err();
        assert_eq!(e.kind, Nixbase32ErrorKind::NonCanonical);
        assert!(e.to_string().contains("non-canonical"));
        // 32 bytes in 52 chars: 4 spare bits in the first char.
        let mut s = "0".repeat(52);
        s.replace_range(0..1, "1");
        assert_eq!(decode_fixed::<32>(&s).unwrap()[31], 0x80);
        s.replace_range(0..1, "2");
        assert_eq!(
            decode_fixed::<32>(&s).unwrap_err().kind,
            Nixbase32ErrorKind::NonCanonical
        );
        // length 3 is not an encoded length
        assert_eq!(
            decode("000").unwrap_err().kind,
            Nixbase32ErrorKind::InvalidLength { len: 3 }
        );
        assert!(matches!(
            decode("0e").unwrap_err().kind,
            Nixbase32ErrorKind::InvalidChar { ch: 'e', pos: 1 }
        ));
        assert!(matches!(
            decode("é00").unwrap_err().kind,
            Nixbase32ErrorKind::InvalidChar { ch: 'é', pos: 0 }
        ));
        assert_eq!(
            decode_fixed::<20>("00").unwrap_err().kind,
            Nixbase32ErrorKind::WrongLength {
                expected: 32,
                got: 2
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn roundtrip(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            let s = encode(&bytes);
            proptest::prop_assert_eq!(s.len(), encoded_len(bytes.len()));
            proptest::prop_assert_eq!(decode(&s).unwrap(), bytes.clone());
            proptest::prop_assert_eq!(s, encode_reference(&bytes));
        }

        /// The unrolled encoder of the hash sizes is Nix's bit loop.
        #[test]
        fn hash_sized_encodings_are_the_reference(
            a in proptest::array::uniform20(proptest::num::u8::ANY),
            b in proptest::array::uniform32(proptest::num::u8::ANY),
        ) {
            proptest::prop_assert_eq!(encode(&a), encode_reference(&a));
            proptest::prop_assert_eq!(encode(&b), encode_reference(&b));
            let mut wide = [b'-'; 60];
            encode_to_slice(&b, &mut wide);
            let want = encode_reference(&b);
            proptest::prop_assert_eq!(&wide[..52], want.as_bytes());
            proptest::prop_assert!(wide[52..].iter().all(|&c| c == b'-'));
        }

        #[test]
        fn fast_and_table_paths_agree(s in "[0-9a-z.]{0,64}") {
            if let Some(n) = decoded_len(s.len()) {
                let mut a = vec![0u8; n];
                let mut b = vec![0u8; n];
                let ra = decode_into(s.as_bytes(), &mut a);
                let rb = decode_into_table(s.as_bytes(), &mut b);
                proptest::prop_assert_eq!(ra, rb);
                proptest::prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn decode_is_canonical(s in "[0-9a-z]{0,60}") {
            if let Ok(b) = decode(&s) {
                proptest::prop_assert_eq!(encode(&b), s);
            }
        }
    }
}
