//! WebSocket frames as a test client writes and reads them, byte for byte, so that lengths,
//! opcodes and close codes are exactly what a test says: one encoder for every test, plus a
//! reader for async streams (an h2 stream opened by extended CONNECT, a TLS stream).

use tokio::io::{AsyncRead, AsyncReadExt};

/// One masked client frame with the given first byte (FIN, RSV and opcode).
pub fn ws_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(first);
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | u8::try_from(len).unwrap()),
        len @ 126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// The next (unmasked, server) frame's opcode and payload; `None` at a clean EOF before it.
pub async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    if stream.read(&mut head[..1]).await.ok()? == 0 {
        return None;
    }
    stream.read_exact(&mut head[1..]).await.ok()?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).await.ok()?;
            usize::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext).await.ok()?;
            usize::try_from(u64::from_be_bytes(ext)).unwrap()
        }
        len => usize::from(len),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x0f, payload))
}
