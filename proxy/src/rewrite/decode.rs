//! Undo the origin's content coding, chunk by chunk.
//!
//! clickstamp asks origins for `identity`; this is the safety net for those that
//! compress anyway. Output per chunk is capped, so a decompression bomb fails the
//! response instead of exhausting memory.

use std::io::Write;

/// A content coding we can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Brotli,
}

impl Coding {
    /// The coding named by a `Content-Encoding` value; `Ok(None)` for identity,
    /// `Err(())` for anything we cannot decode (the response is then passed through).
    #[allow(clippy::result_unit_err)]
    pub fn from_header(value: Option<&str>) -> Result<Option<Coding>, ()> {
        let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        match v.to_ascii_lowercase().as_str() {
            "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
            "deflate" => Ok(Some(Coding::Deflate)),
            "br" => Ok(Some(Coding::Brotli)),
            _ => Err(()),
        }
    }
}

/// Why decoding failed.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("corrupt {coding:?} body: {source}")]
    Corrupt {
        coding: Coding,
        source: std::io::Error,
    },
    #[error("the decoded body exceeds {limit} bytes")]
    TooLarge { limit: usize },
}

enum Inner {
    Gzip(flate2::write::MultiGzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
}

/// A streaming decoder for one response body.
pub struct Decoder {
    coding: Coding,
    inner: Inner,
    produced: usize,
    limit: usize,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Decoder({:?}, {} bytes out)", self.coding, self.produced)
    }
}

impl Decoder {
    /// A decoder for `coding` that refuses to produce more than `limit` bytes in total.
    pub fn new(coding: Coding, limit: usize) -> Decoder {
        let inner = match coding {
            Coding::Gzip => Inner::Gzip(flate2::write::MultiGzDecoder::new(Vec::new())),
            Coding::Deflate => Inner::Deflate(flate2::write::ZlibDecoder::new(Vec::new())),
            Coding::Brotli => Inner::Brotli(Box::new(brotli::DecompressorWriter::new(
                Vec::new(),
                8 * 1024,
            ))),
        };
        Decoder {
            coding,
            inner,
            produced: 0,
            limit,
        }
    }

    /// Decode the next compressed chunk; returns the plain bytes it completed.
    pub fn write(&mut self, chunk: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let coding = self.coding;
        let corrupt = |source| DecodeError::Corrupt { coding, source };
        // Feed in small slices so one chunk of a bomb cannot expand unboundedly
        // before the limit is checked.
        for piece in chunk.chunks(4096) {
            match &mut self.inner {
                Inner::Gzip(d) => d.write_all(piece).map_err(corrupt)?,
                Inner::Deflate(d) => d.write_all(piece).map_err(corrupt)?,
                Inner::Brotli(d) => d.write_all(piece).map_err(corrupt)?,
            }
            if self.produced + self.buffered() > self.limit {
                return Err(DecodeError::TooLarge { limit: self.limit });
            }
        }
        Ok(self.take())
    }

    /// Finish the stream; returns the last plain bytes.
    pub fn finish(&mut self) -> Result<Vec<u8>, DecodeError> {
        let coding = self.coding;
        let corrupt = |source| DecodeError::Corrupt { coding, source };
        match &mut self.inner {
            Inner::Gzip(d) => d.try_finish().map_err(corrupt)?,
            Inner::Deflate(d) => d.try_finish().map_err(corrupt)?,
            Inner::Brotli(d) => d.flush().map_err(corrupt)?,
        }
        Ok(self.take())
    }

    fn buffered(&mut self) -> usize {
        match &mut self.inner {
            Inner::Gzip(d) => d.get_ref().len(),
            Inner::Deflate(d) => d.get_ref().len(),
            Inner::Brotli(d) => d.get_ref().len(),
        }
    }

    fn take(&mut self) -> Vec<u8> {
        let out = match &mut self.inner {
            Inner::Gzip(d) => std::mem::take(d.get_mut()),
            Inner::Deflate(d) => std::mem::take(d.get_mut()),
            Inner::Brotli(d) => std::mem::take(d.get_mut()),
        };
        self.produced += out.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_in_awkward_chunks() {
        let plain: Vec<u8> = (0..50_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let z = gzip(&plain);
        let mut d = Decoder::new(Coding::Gzip, 1 << 20);
        let mut out = Vec::new();
        for c in z.chunks(7) {
            out.extend(d.write(c).unwrap());
        }
        out.extend(d.finish().unwrap());
        assert_eq!(out, plain);
    }

    #[test]
    fn brotli_round_trip() {
        let plain = b"<html><a href=x>y</a></html>".repeat(100);
        let mut z = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut z, 4096, 5, 22);
            w.write_all(&plain).unwrap();
        }
        let mut d = Decoder::new(Coding::Brotli, 1 << 20);
        let mut out = d.write(&z).unwrap();
        out.extend(d.finish().unwrap());
        assert_eq!(out, plain);
    }

    #[test]
    fn bombs_and_garbage_fail_cleanly() {
        let z = gzip(&vec![0u8; 10 << 20]);
        let mut d = Decoder::new(Coding::Gzip, 1 << 20);
        assert!(matches!(d.write(&z), Err(DecodeError::TooLarge { .. })));
        let mut d = Decoder::new(Coding::Gzip, 1 << 20);
        assert!(d.write(b"not gzip at all").is_err());
        assert_eq!(Coding::from_header(Some("GZIP")), Ok(Some(Coding::Gzip)));
        assert_eq!(Coding::from_header(Some("zstd")), Err(()));
        assert_eq!(Coding::from_header(None), Ok(None));
    }
}
