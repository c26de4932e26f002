//! The host's end of the network benchmark: `vmm compare` runs [`serve`] on a thread and
//! gives the probe its address. The protocol is one mode byte from the client, then:
//!
//! - [`MODE_ECHO`] (`'e'`): the server writes back every byte it reads, until EOF.
//! - [`MODE_SINK`] (`'s'`): the server reads and discards until EOF, then writes how many
//!   bytes it read (8 bytes, little-endian) and closes, so the client knows every byte
//!   arrived before it stops its clock.
//!
//! Any other mode byte closes the connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// Echo: 1-byte ping-pongs measure the round trip.
pub const MODE_ECHO: u8 = b'e';
/// Sink: a bulk send measures throughput.
pub const MODE_SINK: u8 = b's';

/// Read and write size of the server.
const BUFFER: usize = 64 << 10;

/// Serves every connection on its own thread, forever. Accept errors (out of descriptors)
/// are waited out, not fatal: the benchmark that needs the server is still to come.
pub fn serve(listener: TcpListener) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let spawned = thread::Builder::new()
                    .name("vmm-probe-net".to_owned())
                    .spawn(move || {
                        // A client that goes away mid-benchmark fails on its own side.
                        let _ = handle(stream);
                    });
                if spawned.is_err() {
                    thread::sleep(Duration::from_millis(10));
                }
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One connection: the mode byte, then echo or sink.
fn handle(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut mode = [0u8; 1];
    stream.read_exact(&mut mode)?;
    let mut buf = vec![0u8; BUFFER];
    match mode[0] {
        MODE_ECHO => loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            stream.write_all(&buf[..n])?;
        },
        MODE_SINK => {
            let mut total: u64 = 0;
            loop {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            stream.write_all(&total.to_le_bytes())?;
            stream.shutdown(Shutdown::Both)
        }
        _ => Ok(()),
    }
}
