//! Bulk binary ingest: fvecs and `.npy` bodies parsed straight into contiguous rows.
//!
//! No JSON tree and no per-vector allocation: a body is checked whole (every row's
//! length, every header field, the exact byte count) and its floats are copied once into
//! the batch. Any defect refuses the whole body before anything is stored.

/// The binary formats `?format=` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryFormat {
    /// Per row: little-endian i32 dims, then dims f32.
    Fvecs,
    /// NumPy `.npy`, `<f4`, C order, shape `(n, dims)`.
    Npy,
}

impl BinaryFormat {
    /// Parses `?format=`.
    pub fn parse(s: &str) -> Option<BinaryFormat> {
        match s {
            "fvecs" => Some(BinaryFormat::Fvecs),
            "npy" => Some(BinaryFormat::Npy),
            _ => None,
        }
    }
}

/// Why a binary body is refused (always a client error).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BinaryError {
    /// An empty body, or a shape of zero rows.
    #[error("the body holds no rows")]
    NoRows,
    /// An fvecs row header other than the index's dims.
    #[error("fvecs row {row} declares {got} dimensions, the index has {expected}")]
    RowDims {
        /// The row.
        row: usize,
        /// Its header.
        got: i64,
        /// The index's dims.
        expected: usize,
    },
    /// The body does not end on a row boundary.
    #[error("fvecs body is not whole rows: {0} bytes left over after the last whole row")]
    Partial(usize),
    /// A malformed npy header.
    #[error("npy header: {0}")]
    NpyHeader(String),
    /// npy data of another size than its shape says.
    #[error("npy data is {got} bytes, its shape needs {want}")]
    NpyLength {
        /// Bytes present.
        got: usize,
        /// Bytes the shape needs.
        want: String,
    },
}

/// Parses a body into contiguous rows of `dims` values (finiteness is checked by the
/// batch, with the row's assigned id in the message).
pub fn parse(format: BinaryFormat, body: &[u8], dims: usize) -> Result<Vec<f32>, BinaryError> {
    match format {
        BinaryFormat::Fvecs => parse_fvecs(body, dims),
        BinaryFormat::Npy => parse_npy(body, dims),
    }
}

fn floats(bytes: &[u8], out: &mut Vec<f32>) {
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
}

fn parse_fvecs(body: &[u8], dims: usize) -> Result<Vec<f32>, BinaryError> {
    if body.is_empty() {
        return Err(BinaryError::NoRows);
    }
    let row_bytes = 4 + 4 * dims;
    let mut out = Vec::with_capacity(body.len() / row_bytes * dims);
    let mut at = 0;
    let mut row = 0;
    while at < body.len() {
        let rest = body.len() - at;
        if rest < 4 {
            return Err(BinaryError::Partial(rest));
        }
        let d = i32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        if d as i64 != dims as i64 {
            return Err(BinaryError::RowDims {
                row,
                got: d as i64,
                expected: dims,
            });
        }
        if rest < row_bytes {
            return Err(BinaryError::Partial(rest));
        }
        floats(&body[at + 4..at + row_bytes], &mut out);
        at += row_bytes;
        row += 1;
    }
    Ok(out)
}

/// Reads the value text of `'key':` in a numpy header dict.
fn header_value<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("'{key}'");
    let after = &dict[dict.find(&pat)? + pat.len()..];
    let after = after.trim_start().strip_prefix(':')?.trim_start();
    let end = if after.starts_with('(') {
        after.find(')')? + 1
    } else if let Some(q) = after.strip_prefix('\'') {
        q.find('\'')? + 2
    } else {
        after.find([',', '}']).unwrap_or(after.len())
    };
    Some(after[..end].trim())
}

fn parse_npy(body: &[u8], dims: usize) -> Result<Vec<f32>, BinaryError> {
    let bad = |m: &str| BinaryError::NpyHeader(m.to_string());
    if body.is_empty() {
        return Err(BinaryError::NoRows);
    }
    if body.len() < 10 || &body[..6] != b"\x93NUMPY" {
        return Err(bad("bad magic (not an .npy body)"));
    }
    let (header_len, start): (usize, usize) = match body[6] {
        1 => (u16::from_le_bytes([body[8], body[9]]) as usize, 10),
        2 | 3 if body.len() >= 12 => (
            u32::from_le_bytes([body[8], body[9], body[10], body[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    let data_at = start
        .checked_add(header_len)
        .ok_or_else(|| bad("header length overflows"))?;
    if data_at > body.len() {
        return Err(bad("header runs past the end of the body"));
    }
    let text = std::str::from_utf8(&body[start..data_at]).map_err(|_| bad("header is not text"))?;
    let dict = text.trim();
    if !(dict.starts_with('{') && dict.ends_with('}')) {
        return Err(bad("header is not a dict"));
    }
    let descr = header_value(dict, "descr").ok_or_else(|| bad("no 'descr'"))?;
    if descr != "'<f4'" {
        return Err(bad(&format!(
            "descr {descr} is not '<f4' (little-endian float32)"
        )));
    }
    match header_value(dict, "fortran_order").ok_or_else(|| bad("no 'fortran_order'"))? {
        "False" => {}
        "True" => return Err(bad("fortran_order True is not supported (C order only)")),
        other => return Err(bad(&format!("fortran_order {other} is not a boolean"))),
    }
    let shape = header_value(dict, "shape").ok_or_else(|| bad("no 'shape'"))?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| bad("shape is not a tuple"))?;
    let parts: Vec<u64> = inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u64>().map_err(|_| bad("shape holds a non-integer")))
        .collect::<Result<_, _>>()?;
    let [n, d] = parts[..] else {
        return Err(bad(&format!("shape {shape} is not 2-D (n, dims)")));
    };
    if d != dims as u64 {
        return Err(bad(&format!(
            "shape {shape} has {d} columns, the index has {dims} dimensions"
        )));
    }
    if n == 0 {
        return Err(BinaryError::NoRows);
    }
    let data = &body[data_at..];
    let want = n.checked_mul(d).and_then(|x| x.checked_mul(4));
    if want != Some(data.len() as u64) {
        return Err(BinaryError::NpyLength {
            got: data.len(),
            want: want.map_or("more than 2^64".into(), |w| w.to_string()),
        });
    }
    let mut out = Vec::with_capacity(data.len() / 4);
    floats(data, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fvecs(rows: &[Vec<f32>]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in rows {
            out.extend_from_slice(&(r.len() as i32).to_le_bytes());
            r.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        out
    }

    fn npy(rows: &[Vec<f32>], dims: usize) -> Vec<u8> {
        npy_shape(rows, &format!("({}, {})", rows.len(), dims))
    }

    fn npy_shape(rows: &[Vec<f32>], shape: &str) -> Vec<u8> {
        let text = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        let mut h = text.into_bytes();
        let pad = (64 - (10 + h.len() + 1) % 64) % 64;
        h.extend(std::iter::repeat_n(b' ', pad));
        h.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(&h);
        rows.iter()
            .flatten()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        out
    }

    fn rows_strategy() -> impl Strategy<Value = (usize, Vec<Vec<f32>>)> {
        (1usize..20, 1usize..30).prop_flat_map(|(dims, n)| {
            (
                Just(dims),
                proptest::collection::vec(proptest::collection::vec(-1e6f32..1e6, dims), n),
            )
        })
    }

    proptest! {
        #[test]
        fn round_trips((dims, rows) in rows_strategy()) {
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            prop_assert_eq!(parse(BinaryFormat::Fvecs, &fvecs(&rows), dims).unwrap(), flat.clone());
            prop_assert_eq!(parse(BinaryFormat::Npy, &npy(&rows, dims), dims).unwrap(), flat);
        }

        #[test]
        fn truncated_or_extended_bodies_are_refused((dims, rows) in rows_strategy(), cut in 1usize..8, extra in 1usize..8) {
            let f = fvecs(&rows);
            prop_assert!(parse(BinaryFormat::Fvecs, &f[..f.len() - cut.min(f.len() - 1)], dims).is_err());
            let mut g = f.clone();
            g.extend(std::iter::repeat_n(0u8, extra));
            prop_assert!(parse(BinaryFormat::Fvecs, &g, dims).is_err());
            let n = npy(&rows, dims);
            prop_assert!(parse(BinaryFormat::Npy, &n[..n.len() - cut], dims).is_err());
            let mut m = n.clone();
            m.extend(std::iter::repeat_n(0u8, extra));
            prop_assert!(parse(BinaryFormat::Npy, &m, dims).is_err());
        }

        #[test]
        fn corrupt_headers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300), dims in 1usize..10) {
            let _ = parse(BinaryFormat::Fvecs, &b, dims);
            let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
            with_magic.extend_from_slice(&b);
            let _ = parse(BinaryFormat::Npy, &with_magic, dims);
        }
    }

    #[test]
    fn header_defects() {
        let rows = vec![vec![1.0f32, 2.0], vec![3.0, 4.0]];
        let good = npy(&rows, 2);
        assert!(parse(BinaryFormat::Npy, &good, 2).is_ok());
        let with = |from: &str, to: &str| {
            let s = String::from_utf8_lossy(&good).replace(from, to);
            s.into_bytes()
        };
        for (from, to) in [
            ("<f4", "<f8"),
            ("<f4", ">f4"),
            ("False", "True"),
            ("(2, 2)", "(4,)"),
            ("(2, 2)", "(2, 1, 2)"),
            ("(2, 2)", "(1, 2)"),
            ("(2, 2)", "(2, 3)"),
            ("'shape'", "'shapes'"),
        ] {
            assert!(
                parse(BinaryFormat::Npy, &with(from, to), 2).is_err(),
                "{from} -> {to}"
            );
        }
        assert_eq!(parse(BinaryFormat::Npy, b"", 2), Err(BinaryError::NoRows));
        assert_eq!(parse(BinaryFormat::Fvecs, b"", 2), Err(BinaryError::NoRows));
        let zero = npy(&[], 2);
        assert_eq!(parse(BinaryFormat::Npy, &zero, 2), Err(BinaryError::NoRows));
        let huge = npy_shape(&rows, "(1000000000000, 2)");
        assert!(matches!(
            parse(BinaryFormat::Npy, &huge, 2),
            Err(BinaryError::NpyLength { .. })
        ));
        assert!(matches!(
            parse(BinaryFormat::Fvecs, &fvecs(&[vec![1.0, 2.0, 3.0]]), 2),
            Err(BinaryError::RowDims {
                row: 0,
                got: 3,
                expected: 2
            })
        ));
    }
}
