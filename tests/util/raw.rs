//! Raw-socket client helpers: a loopback connection with bounded reads and writes, and a
//! response head read byte by byte, so a test controls every byte it sends and sees every byte
//! it gets back.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long one read or write on a test's raw socket may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Reads a response head (through the blank line) byte by byte, leaving the rest unread.
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "reading a head: {other:?} after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}
