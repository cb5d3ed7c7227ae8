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

/// Parses a whole body into contiguous rows of `dims` values (finiteness is checked by the
/// batch, with the row's assigned id in the message): [`Parser`] fed the body at once.
pub fn parse(format: BinaryFormat, body: &[u8], dims: usize) -> Result<Vec<f32>, BinaryError> {
    let mut p = Parser::new(format, dims, Some(body.len() as u64));
    p.feed(body)?;
    p.finish()
}

/// Largest `.npy` header read (real headers are under 200 bytes; this keeps a hostile one
/// from growing the carry without bound).
const MAX_NPY_HEADER: usize = 1 << 20;

/// Where a [`Parser`] is in its body.
#[derive(Debug)]
enum Stage {
    /// fvecs rows.
    Rows,
    /// The `.npy` magic and header, collected in the carry.
    NpyHeader,
    /// `.npy` data: `want` bytes of floats expected, `got` seen so far.
    NpyData { want: Option<u64>, got: u64 },
}

/// A binary body parsed as it arrives, chunk by chunk, straight into rows: the body is never
/// held whole, so an upload costs its rows (what the index keeps) and a chunk. A row split
/// across chunks waits in a carry of at most one row. Any defect is the error [`parse`] gives
/// for the whole body, found as early as its bytes arrive.
#[derive(Debug)]
pub struct Parser {
    format: BinaryFormat,
    dims: usize,
    out: Vec<f32>,
    carry: Vec<u8>,
    stage: Stage,
    /// fvecs rows read.
    row: usize,
    /// Bytes fed.
    seen: u64,
}

impl Parser {
    /// A parser of a body in `format` for an index of `dims`. With the body's length known
    /// (`Content-Length`), the rows are allocated once at their exact size: growing by
    /// doubling would hold up to twice a big body's rows for a moment.
    pub fn new(format: BinaryFormat, dims: usize, expected_len: Option<u64>) -> Parser {
        let floats = expected_len.map_or(0, |n| match format {
            BinaryFormat::Fvecs => n / (4 + 4 * dims as u64) * dims as u64,
            BinaryFormat::Npy => n / 4,
        });
        Parser {
            format,
            dims,
            out: Vec::with_capacity(usize::try_from(floats).unwrap_or(0)),
            carry: Vec::new(),
            stage: match format {
                BinaryFormat::Fvecs => Stage::Rows,
                BinaryFormat::Npy => Stage::NpyHeader,
            },
            row: 0,
            seen: 0,
        }
    }

    /// Bytes fed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Parses the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), BinaryError> {
        self.seen += chunk.len() as u64;
        match self.format {
            BinaryFormat::Fvecs => self.feed_fvecs(chunk),
            BinaryFormat::Npy => self.feed_npy(chunk),
        }
    }

    /// The rows, once the whole body was fed: an empty body, a partial last row or a data
    /// length other than the header's is an error.
    pub fn finish(self) -> Result<Vec<f32>, BinaryError> {
        if self.seen == 0 {
            return Err(BinaryError::NoRows);
        }
        match self.stage {
            Stage::Rows if !self.carry.is_empty() => Err(BinaryError::Partial(self.carry.len())),
            Stage::Rows => Ok(self.out),
            Stage::NpyHeader => Err(match npy_header(&self.carry, self.dims) {
                Err(e) => e,
                Ok(_) if self.carry.len() < 10 => {
                    BinaryError::NpyHeader("bad magic (not an .npy body)".into())
                }
                Ok(_) => BinaryError::NpyHeader("header runs past the end of the body".into()),
            }),
            // `want` is whole floats and every byte up to it is kept, so a body of exactly
            // `want` bytes leaves no partial float behind
            Stage::NpyData { want, got } if want != Some(got) => Err(BinaryError::NpyLength {
                got: usize::try_from(got).unwrap_or(usize::MAX),
                want: want.map_or("more than 2^64".into(), |w| w.to_string()),
            }),
            Stage::NpyData { .. } => Ok(self.out),
        }
    }

    fn check_row_head(&self, head: &[u8]) -> Result<(), BinaryError> {
        let d = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if d as i64 != self.dims as i64 {
            return Err(BinaryError::RowDims {
                row: self.row,
                got: d as i64,
                expected: self.dims,
            });
        }
        Ok(())
    }

    fn feed_fvecs(&mut self, mut chunk: &[u8]) -> Result<(), BinaryError> {
        let row_bytes = 4 + 4 * self.dims;
        if !self.carry.is_empty() {
            let take = (row_bytes - self.carry.len()).min(chunk.len());
            self.carry.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.carry.len() >= 4 {
                self.check_row_head(&self.carry[..4])?;
            }
            if self.carry.len() < row_bytes {
                return Ok(());
            }
            floats(&self.carry[4..], &mut self.out);
            self.carry.clear();
            self.row += 1;
        }
        while chunk.len() >= row_bytes {
            self.check_row_head(&chunk[..4])?;
            floats(&chunk[4..row_bytes], &mut self.out);
            chunk = &chunk[row_bytes..];
            self.row += 1;
        }
        if chunk.len() >= 4 {
            self.check_row_head(&chunk[..4])?;
        }
        self.carry.extend_from_slice(chunk);
        Ok(())
    }

    fn feed_npy(&mut self, mut chunk: &[u8]) -> Result<(), BinaryError> {
        // the header into the carry (only its bytes: a body fed whole is not copied), then data
        while let Stage::NpyHeader = self.stage {
            let need = match npy_header(&self.carry, self.dims)? {
                Header::Ready { data_at, want } => {
                    let rest = self.carry.split_off(data_at);
                    self.carry.clear();
                    self.stage = Stage::NpyData { want, got: 0 };
                    self.feed_npy_data(&rest);
                    break;
                }
                Header::Need(n) => n,
            };
            if chunk.is_empty() {
                return Ok(());
            }
            let take = need.saturating_sub(self.carry.len()).max(1).min(chunk.len());
            self.carry.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        self.feed_npy_data(chunk);
        Ok(())
    }

    fn feed_npy_data(&mut self, mut chunk: &[u8]) {
        let Stage::NpyData { want, got } = &mut self.stage else {
            return;
        };
        let before = *got;
        *got += chunk.len() as u64;
        // past the header's length: counted (the error says how long the body was), not kept
        let keep = want
            .map_or(0, |w| w.saturating_sub(before))
            .min(chunk.len() as u64) as usize;
        chunk = &chunk[..keep];
        if !self.carry.is_empty() {
            let take = (4 - self.carry.len()).min(chunk.len());
            self.carry.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.carry.len() < 4 {
                return;
            }
            floats(&self.carry, &mut self.out);
            self.carry.clear();
        }
        let whole = chunk.len() / 4 * 4;
        floats(&chunk[..whole], &mut self.out);
        self.carry.extend_from_slice(&chunk[whole..]);
    }
}

fn floats(bytes: &[u8], out: &mut Vec<f32>) {
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
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

/// What the start of an `.npy` body says.
enum Header {
    /// Too little of it to judge: read up to this many bytes, then look again.
    Need(usize),
    /// Whole: the data starts at `data_at` and the shape needs `want` bytes of it (`None`
    /// past 2^64).
    Ready { data_at: usize, want: Option<u64> },
}

/// The `.npy` header at the start of `body`, checked as far as it has arrived.
fn npy_header(body: &[u8], dims: usize) -> Result<Header, BinaryError> {
    let bad = |m: &str| BinaryError::NpyHeader(m.to_string());
    let magic = b"\x93NUMPY";
    if body[..body.len().min(6)] != magic[..body.len().min(6)] {
        return Err(bad("bad magic (not an .npy body)"));
    }
    if body.len() < 12 && !(body.len() >= 10 && body[6] == 1) {
        if body.len() >= 7 && !matches!(body[6], 1..=3) {
            return Err(bad(&format!("unsupported format version {}", body[6])));
        }
        return Ok(Header::Need(12));
    }
    let (header_len, start): (usize, usize) = match body[6] {
        1 => (u16::from_le_bytes([body[8], body[9]]) as usize, 10),
        2 | 3 => (
            u32::from_le_bytes([body[8], body[9], body[10], body[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    let data_at = start
        .checked_add(header_len)
        .ok_or_else(|| bad("header length overflows"))?;
    if data_at > MAX_NPY_HEADER {
        return Err(bad("header longer than 1 MiB"));
    }
    if data_at > body.len() {
        return Ok(Header::Need(data_at));
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
    Ok(Header::Ready {
        data_at,
        want: n.checked_mul(d).and_then(|x| x.checked_mul(4)),
    })
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

        /// Fed in any chunks — a byte at a time, split inside a row, a header or a float —
        /// the parser gives what the whole body gives, rows or the same error.
        #[test]
        fn any_chunking_parses_as_the_whole_body(
            (dims, rows) in rows_strategy(),
            cuts in proptest::collection::vec(0usize..4000, 0..12),
            trim in 0usize..3,
            extra in 0usize..3,
        ) {
            for format in [BinaryFormat::Fvecs, BinaryFormat::Npy] {
                let mut body = match format {
                    BinaryFormat::Fvecs => fvecs(&rows),
                    BinaryFormat::Npy => npy(&rows, dims),
                };
                body.truncate(body.len() - trim.min(body.len()));
                body.extend(std::iter::repeat_n(7u8, extra));
                let whole = parse(format, &body, dims);
                let mut at: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
                at.sort_unstable();
                let mut p = Parser::new(format, dims, None);
                let mut from = 0;
                let mut fed = Ok(());
                for &to in at.iter().chain(std::iter::once(&body.len())) {
                    fed = fed.and_then(|_| p.feed(&body[from..to]));
                    from = to;
                }
                let chunked = fed.and_then(|_| p.finish());
                prop_assert_eq!(&chunked, &whole, "{:?} cut at {:?}", format, at);
                let mut bytewise = Parser::new(format, dims, Some(body.len() as u64));
                let fed: Result<(), BinaryError> = body.chunks(1).try_for_each(|b| bytewise.feed(b));
                prop_assert_eq!(&fed.and_then(|_| bytewise.finish()), &whole);
            }
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
