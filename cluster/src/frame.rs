//! Framing for Squall's RPC: length-prefixed frames (tokio-util's
//! `LengthDelimitedCodec`, 4-byte big-endian length) holding an rmp-serde
//! encoded [`Frame`] with a protocol version, and a cap on frame size.

use bytes::{BufMut, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Default cap on one frame, in bytes (binary uploads go in smaller chunks).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// One message on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame<T> {
    /// The sender's [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The message.
    pub body: T,
}

/// Why a frame could not be read or written. Any of these closes the
/// connection; the peer keeps serving others.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the cap.
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Announced or actual length (0 when the codec did not say).
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The bytes are not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {got}, this side {want}")]
    Version {
        /// The peer's version.
        got: u16,
        /// Ours.
        want: u16,
    },
    /// The connection ended inside a frame.
    #[error("connection closed in the middle of a frame ({0} bytes unread)")]
    CutShort(usize),
    /// An I/O error on the connection.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `Frame<Out>` and decodes `Frame<In>`, checking the version.
pub struct FrameCodec<In, Out> {
    inner: LengthDelimitedCodec,
    max: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec refusing frames over `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            inner: LengthDelimitedCodec::builder()
                .max_frame_length(max_frame_bytes)
                .new_codec(),
            max: max_frame_bytes,
            _types: PhantomData,
        }
    }

    fn map_len_error(&self, e: std::io::Error) -> FrameError {
        if e.kind() == std::io::ErrorKind::InvalidData {
            FrameError::TooLarge {
                len: 0,
                max: self.max,
            }
        } else {
            FrameError::Io(e)
        }
    }
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        // The inner codec reserves room for the whole announced frame as
        // soon as it reads a length: hand it only whole frames, so a peer
        // announcing a large frame and sending little costs what it sent.
        if let Some(head) = src.get(..4) {
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if len > self.max {
                return Err(FrameError::TooLarge { len, max: self.max });
            }
            if src.len() < 4 + len {
                return Ok(None);
            }
        } else {
            return Ok(None);
        }
        let Some(bytes) = self.inner.decode(src).map_err(|e| self.map_len_error(e))? else {
            return Ok(None);
        };
        let frame: Frame<In> =
            rmp_serde::from_slice(&bytes).map_err(|e| FrameError::Malformed(e.to_string()))?;
        if frame.version != PROTOCOL_VERSION {
            return Err(FrameError::Version {
                got: frame.version,
                want: PROTOCOL_VERSION,
            });
        }
        Ok(Some(frame.body))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::CutShort(src.len())),
        }
    }
}

impl<In, Out: Serialize> Encoder<Out> for FrameCodec<In, Out> {
    type Error = FrameError;

    /// Serializes the frame straight into `dst` behind its length, so a
    /// body of bytes (a worker's batch) is copied once; a frame refused
    /// leaves `dst` as it was.
    fn encode(&mut self, body: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        let frame = Frame {
            version: PROTOCOL_VERSION,
            body,
        };
        let start = dst.len();
        dst.put_u32(0);
        let written = rmp_serde::encode::write_named(&mut (&mut *dst).writer(), &frame);
        let len = dst.len() - start - 4;
        let refusal = match written {
            Err(e) => Some(FrameError::Malformed(e.to_string())),
            Ok(()) if len > self.max || u32::try_from(len).is_err() => {
                Some(FrameError::TooLarge { len, max: self.max })
            }
            Ok(()) => None,
        };
        if let Some(e) = refusal {
            dst.truncate(start);
            return Err(e);
        }
        dst[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_bytes::ByteBuf;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Ping(u32),
        Blob(Vec<u8>),
    }

    fn codec() -> FrameCodec<Msg, Msg> {
        FrameCodec::new(1024)
    }

    fn raw(payload: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn a_frame_is_its_length_then_the_named_rmp_serde_frame() {
        let mut c: FrameCodec<ByteBuf, ByteBuf> = FrameCodec::new(1 << 20);
        for len in [0, 1, 255, 256, 65_535, 65_536, 300_000] {
            let body: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let named = rmp_serde::to_vec_named(&Frame {
                version: PROTOCOL_VERSION,
                body: ByteBuf::from(body.clone()),
            })
            .unwrap();
            let mut direct = BytesMut::from(&b"before"[..]);
            c.encode(ByteBuf::from(body.clone()), &mut direct).unwrap();
            assert_eq!(&direct[..6], b"before");
            assert_eq!(&direct[6..10], &(named.len() as u32).to_be_bytes());
            assert_eq!(&direct[10..], &named[..], "body of {len} bytes");
            let mut read = direct.split_off(6);
            assert_eq!(c.decode(&mut read).unwrap(), Some(ByteBuf::from(body)));
        }
    }

    #[test]
    fn a_frame_over_the_cap_is_refused_and_adds_nothing() {
        let mut c: FrameCodec<ByteBuf, ByteBuf> = FrameCodec::new(1024);
        let mut dst = BytesMut::from(&b"before"[..]);
        let e = c
            .encode(ByteBuf::from(vec![0; 1010]), &mut dst)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "frame of 1028 bytes is over the 1024-byte limit"
        );
        assert_eq!(&dst[..], b"before");
        c.encode(ByteBuf::from(vec![0; 1000]), &mut dst).unwrap();
        assert_eq!(dst.len(), 6 + 4 + 1018);
    }

    #[test]
    fn round_trip_several_frames() {
        let mut c = codec();
        let mut buf = BytesMut::new();
        c.encode(Msg::Ping(7), &mut buf).unwrap();
        c.encode(Msg::Blob(vec![1, 2, 3]), &mut buf).unwrap();
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Msg::Ping(7)));
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Msg::Blob(vec![1, 2, 3])));
        assert_eq!(c.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn oversized_frames_are_refused_both_ways() {
        let mut c = codec();
        let mut buf = BytesMut::new();
        let e = c.encode(Msg::Blob(vec![0; 2000]), &mut buf).unwrap_err();
        assert_eq!(
            e.to_string(),
            "frame of 2024 bytes is over the 1024-byte limit"
        );
        let mut announced = BytesMut::new();
        announced.extend_from_slice(&(1_000_000u32).to_be_bytes());
        assert!(matches!(
            c.decode(&mut announced),
            Err(FrameError::TooLarge { max: 1024, .. })
        ));
    }

    #[test]
    fn malformed_and_wrong_version_frames_are_errors() {
        let mut c = codec();
        let e = c.decode(&mut raw(b"\xc1\xc1 garbage")).unwrap_err();
        assert!(e.to_string().starts_with("malformed frame: "), "{e}");
        let future = rmp_serde::to_vec_named(&Frame {
            version: 99,
            body: Msg::Ping(1),
        })
        .unwrap();
        let e = c.decode(&mut raw(&future)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "peer speaks protocol version 99, this side 1"
        );
    }

    #[test]
    fn a_frame_cut_short_is_an_error_at_eof() {
        let mut c = codec();
        let mut buf = BytesMut::new();
        c.encode(Msg::Ping(7), &mut buf).unwrap();
        buf.truncate(buf.len() - 2);
        assert_eq!(c.decode(&mut buf).unwrap(), None, "waits for the rest");
        let e = c.decode_eof(&mut buf).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("connection closed in the middle of a frame"),
            "{e}"
        );
    }

    #[test]
    fn an_announced_frame_costs_only_what_arrived() {
        let mut c: FrameCodec<Msg, Msg> = FrameCodec::new(16 << 20);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(16u32 << 20).to_be_bytes());
        buf.extend_from_slice(b"0123456789");
        assert!(c.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() < 1 << 20,
            "reserved {} bytes",
            buf.capacity()
        );
        let mut over = BytesMut::new();
        over.extend_from_slice(&((16u32 << 20) + 1).to_be_bytes());
        assert!(matches!(
            c.decode(&mut over),
            Err(FrameError::TooLarge { len, .. }) if len == (16 << 20) + 1
        ));
    }

    #[test]
    fn frames_split_anywhere_decode_whole() {
        let mut c = codec();
        let mut wire = BytesMut::new();
        c.encode(Msg::Blob(vec![9; 300]), &mut wire).unwrap();
        c.encode(Msg::Ping(7), &mut wire).unwrap();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(m) = c.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, vec![Msg::Blob(vec![9; 300]), Msg::Ping(7)]);
    }
}
