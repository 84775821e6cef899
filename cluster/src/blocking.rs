//! [`FramedStream`]: the frame codec over a blocking byte stream (a
//! `TcpStream`), for daemons that use threads rather than async tasks.

use crate::frame::{FrameCodec, FrameError};
use bytes::BytesMut;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};
use tokio_util::codec::{Decoder, Encoder};

/// Bytes asked of the stream per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Reads `In` frames from and writes `Out` frames to a blocking stream.
pub struct FramedStream<S, In, Out> {
    stream: S,
    codec: FrameCodec<In, Out>,
    read_buf: BytesMut,
    write_buf: BytesMut,
    chunk: Box<[u8]>,
}

impl<S: Read + Write, In: DeserializeOwned, Out: Serialize> FramedStream<S, In, Out> {
    /// Frames `stream`, refusing frames over `max_frame_bytes` both ways.
    pub fn new(stream: S, max_frame_bytes: usize) -> Self {
        Self {
            stream,
            codec: FrameCodec::new(max_frame_bytes),
            read_buf: BytesMut::with_capacity(8 * 1024),
            write_buf: BytesMut::with_capacity(8 * 1024),
            chunk: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
        }
    }

    /// Encodes and writes one frame.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] for a message over the cap (nothing is
    /// written), [`FrameError::Io`] when the write fails.
    pub fn send(&mut self, msg: Out) -> Result<(), FrameError> {
        self.feed(msg)?;
        self.flush()
    }

    /// Encodes one frame behind those already fed, without writing, so
    /// several frames go out in one write at [`FramedStream::flush`].
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] for a message over the cap (nothing is
    /// added).
    pub fn feed(&mut self, msg: Out) -> Result<(), FrameError> {
        self.codec.encode(msg, &mut self.write_buf)
    }

    /// The stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The stream, with any bytes read and not yet decoded dropped.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// The bytes fed and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.write_buf.len()
    }

    /// Writes every frame fed so far.
    ///
    /// # Errors
    /// [`FrameError::Io`] when the write fails (the fed frames are
    /// dropped: the stream is no longer usable).
    pub fn flush(&mut self) -> Result<(), FrameError> {
        let written = self
            .stream
            .write_all(&self.write_buf)
            .and_then(|()| self.stream.flush());
        self.write_buf.clear();
        written?;
        Ok(())
    }

    /// Reads the next frame; `Ok(None)` when the peer closed the stream
    /// between frames.
    ///
    /// # Errors
    /// [`FrameError`] for a malformed, oversized or cut-short frame, a
    /// frame of another protocol version, or an I/O error (a read timeout
    /// set on the stream shows as `Io` with kind `WouldBlock`/`TimedOut`).
    pub fn recv(&mut self) -> Result<Option<In>, FrameError> {
        loop {
            if let Some(msg) = self.codec.decode(&mut self.read_buf)? {
                return Ok(Some(msg));
            }
            let n = self.stream.read(&mut self.chunk)?;
            if n == 0 {
                return self.codec.decode_eof(&mut self.read_buf);
            }
            self.read_buf.extend_from_slice(&self.chunk[..n]);
        }
    }
}
