//! The binary segment codec: one immutable object per appended batch.
//!
//! A batch is stored as ids plus one contiguous block of little-endian `f32`, never as one
//! JSON object per vector: decoding is a bounds check and a `memcpy`, and a 10k×384 index
//! is four objects, not forty thousand. A CRC32 over the body catches torn or corrupted
//! objects before they can poison ground truth or a graph.
//!
//! Layout (all integers little-endian):
//! ```text
//! 0   magic  b"VTSEG\0\0\x01"
//! 8   u32    dims
//! 12  u64    count
//! 20  u32    byte length of the id block
//! 24  u32    CRC32 of bytes 8..24 (the sizes) and of everything after the header
//! 28  u32    reserved (0)
//! 32  f32 × count × dims   vectors, row-major
//! ..  ids: per id a u32 byte length, then UTF-8 bytes
//! ```

use bytes::Bytes;

const MAGIC: &[u8; 8] = b"VTSEG\0\0\x01";
const HEADER: usize = 32;

/// Why a stored segment does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    /// Not a segment, or a format this build does not read.
    #[error("bad segment magic")]
    Magic,
    /// Shorter or longer than its header says.
    #[error("segment is {got} bytes, its header says {want}")]
    Length {
        /// Bytes expected from the header.
        want: usize,
        /// Bytes present.
        got: usize,
    },
    /// The checksum does not match: the object is damaged.
    #[error("segment checksum mismatch")]
    Checksum,
    /// An id is not valid UTF-8 or the id block is malformed.
    #[error("segment id block is malformed")]
    Ids,
    /// The header's sizes overflow.
    #[error("segment header sizes overflow")]
    Overflow,
}

/// A decoded segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Dimensions of every vector.
    pub dims: usize,
    /// Ids, one per row.
    pub ids: Vec<String>,
    /// Rows, `ids.len() * dims` values.
    pub data: Vec<f32>,
}

/// Floats seen as their little-endian bytes, without a copy: the owner keeps them alive for
/// as long as any `Bytes` made from this does.
#[cfg(target_endian = "little")]
struct LeBytes<O>(O);

#[cfg(target_endian = "little")]
impl<O: AsRef<[f32]>> AsRef<[u8]> for LeBytes<O> {
    fn as_ref(&self) -> &[u8] {
        let f = self.0.as_ref();
        // SAFETY: an f32 is 4 bytes with no padding and any byte may be read as a u8; the
        // slice covers exactly the floats' memory and borrows `self`, which owns them. On a
        // little-endian target these are the bytes `f32::to_le_bytes` gives.
        unsafe { std::slice::from_raw_parts(f.as_ptr().cast::<u8>(), std::mem::size_of_val(f)) }
    }
}

/// A segment as the parts of one object — header, rows, ids — with the rows not copied:
/// `data` is shared into the payload as it is (a big binary append is stored without a
/// second copy of its rows in memory). The same bytes as [`encode`], in three pieces.
pub fn encode_parts<O>(dims: usize, ids: &[String], data: O) -> Vec<Bytes>
where
    O: AsRef<[f32]> + Send + 'static,
{
    let floats = data.as_ref();
    debug_assert_eq!(ids.len() * dims, floats.len());
    let id_bytes: usize = ids.iter().map(|s| 4 + s.len()).sum();
    let mut id_block = Vec::with_capacity(id_bytes);
    for id in ids {
        id_block.extend_from_slice(&(id.len() as u32).to_le_bytes());
        id_block.extend_from_slice(id.as_bytes());
    }
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(dims as u32).to_le_bytes());
    header.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    header.extend_from_slice(&(id_bytes as u32).to_le_bytes());
    #[cfg(target_endian = "little")]
    let rows = Bytes::from_owner(LeBytes(data));
    #[cfg(not(target_endian = "little"))]
    let rows = Bytes::from(floats.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    let mut h = crc32fast::Hasher::new();
    h.update(&header[8..24]);
    h.update(&rows);
    h.update(&id_block);
    header.extend_from_slice(&h.finalize().to_le_bytes());
    header.extend_from_slice(&[0u8; 4]); // reserved
    vec![Bytes::from(header), rows, Bytes::from(id_block)]
}

/// Encodes rows into a segment object. `data.len()` must be `ids.len() * dims`.
pub fn encode(dims: usize, ids: &[String], data: &[f32]) -> Bytes {
    debug_assert_eq!(ids.len() * dims, data.len());
    let id_bytes: usize = ids.iter().map(|s| 4 + s.len()).sum();
    let mut out = Vec::with_capacity(HEADER + data.len() * 4 + id_bytes);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(dims as u32).to_le_bytes());
    out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    out.extend_from_slice(&(id_bytes as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 8]); // checksum, reserved
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for id in ids {
        out.extend_from_slice(&(id.len() as u32).to_le_bytes());
        out.extend_from_slice(id.as_bytes());
    }
    let crc = checksum(&out);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    Bytes::from(out)
}

/// CRC32 over the size fields and the body, so a flipped size is caught too.
fn checksum(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&b[8..24]);
    h.update(&b[HEADER..]);
    h.finalize()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes and verifies a segment object.
pub fn decode(b: &[u8]) -> Result<Segment, SegmentError> {
    if b.len() < HEADER || &b[..8] != MAGIC {
        return Err(SegmentError::Magic);
    }
    let dims = u32_at(b, 8) as usize;
    let count = u64::from_le_bytes(b[12..20].try_into().map_err(|_| SegmentError::Magic)?);
    let id_bytes = u32_at(b, 20) as usize;
    let crc = u32_at(b, 24);
    let count = usize::try_from(count).map_err(|_| SegmentError::Overflow)?;
    let floats = count.checked_mul(dims).ok_or(SegmentError::Overflow)?;
    let want = floats
        .checked_mul(4)
        .and_then(|n| n.checked_add(HEADER + id_bytes))
        .ok_or(SegmentError::Overflow)?;
    if b.len() != want {
        return Err(SegmentError::Length { want, got: b.len() });
    }
    if checksum(b) != crc {
        return Err(SegmentError::Checksum);
    }
    let data_end = HEADER + floats * 4;
    let data: Vec<f32> = b[HEADER..data_end]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut ids = Vec::with_capacity(count);
    let mut at = data_end;
    for _ in 0..count {
        if at + 4 > b.len() {
            return Err(SegmentError::Ids);
        }
        let len = u32_at(b, at) as usize;
        at += 4;
        let end = at
            .checked_add(len)
            .filter(|&e| e <= b.len())
            .ok_or(SegmentError::Ids)?;
        let s = std::str::from_utf8(&b[at..end]).map_err(|_| SegmentError::Ids)?;
        ids.push(s.to_string());
        at = end;
    }
    if at != b.len() {
        return Err(SegmentError::Ids);
    }
    Ok(Segment { dims, ids, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_segment() -> impl Strategy<Value = (usize, Vec<String>, Vec<f32>)> {
        (1usize..16, 0usize..20).prop_flat_map(|(dims, n)| {
            (
                Just(dims),
                proptest::collection::vec("\\PC{0,12}", n),
                proptest::collection::vec(any::<f32>().prop_filter("finite", |x| x.is_finite()), n * dims),
            )
        })
    }

    proptest! {
        #[test]
        fn round_trips((dims, ids, data) in arb_segment()) {
            let bytes = encode(dims, &ids, &data);
            let seg = decode(&bytes).unwrap();
            prop_assert_eq!(seg.ids, ids);
            prop_assert_eq!(seg.data, data);
        }

        /// The parts, joined, are the object `encode` makes: one format, two ways to write it.
        #[test]
        fn the_parts_are_the_encoding((dims, ids, data) in arb_segment()) {
            let parts = encode_parts(dims, &ids, data.clone());
            prop_assert_eq!(parts.len(), 3);
            let joined: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
            prop_assert_eq!(&joined[..], &encode(dims, &ids, &data)[..]);
        }

        #[test]
        fn any_single_corruption_is_caught((dims, ids, data) in arb_segment(), pos in any::<usize>(), bit in 0u8..8) {
            let mut bytes = encode(dims, &ids, &data).to_vec();
            let pos = pos % bytes.len();
            bytes[pos] ^= 1 << bit;
            // reserved bytes are not covered; anything else must fail to decode
            if !(28..32).contains(&pos) {
                prop_assert!(decode(&bytes).is_err());
            }
        }

        #[test]
        fn truncation_is_caught((dims, ids, data) in arb_segment(), cut in 1usize..64) {
            let bytes = encode(dims, &ids, &data);
            let cut = cut.min(bytes.len());
            prop_assert!(decode(&bytes[..bytes.len() - cut]).is_err());
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&b);
        }
    }
}
