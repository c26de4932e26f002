//! The probe's end of the network benchmark (the host runs [`crate::net_server`]): TCP
//! round trip and bulk throughput from wherever the probe runs to the host. For a microVM
//! the path crosses virtio-net and the host's TAP; for a container, a veth pair.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::failure::{Failure, OrFail};
use crate::net_server::{MODE_ECHO, MODE_SINK};
use crate::report::NetResults;

/// How long connecting, or any one read or write, may take before the benchmark fails.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The fewest round trips measured, however slow the level.
const MIN_ROUND_TRIPS: u64 = 10;
/// The bulk send's write size.
const CHUNK: usize = 64 << 10;
/// The fewest chunks sent, however slow the level.
const MIN_CHUNKS: u64 = 16;

/// The server's address: given, or the default gateway's (from /proc/net/route).
pub fn resolve(target: super::NetTarget) -> Result<SocketAddr, Failure> {
    match target {
        super::NetTarget::Address(addr) => Ok(addr),
        super::NetTarget::Gateway { port } => {
            let routes = std::fs::read_to_string("/proc/net/route")
                .or_fail(|| "read /proc/net/route".to_owned())?;
            let gateway = default_gateway(&routes)
                .ok_or_else(|| Failure::wrong("find the default gateway", "no default route"))?;
            Ok(SocketAddr::from((gateway, port)))
        }
    }
}

/// The gateway of the default route in /proc/net/route's table (addresses are hex in the
/// kernel's byte order, which is little-endian here).
fn default_gateway(routes: &str) -> Option<std::net::Ipv4Addr> {
    routes.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "00000000", gateway, ..] => u32::from_str_radix(gateway, 16)
                .ok()
                .filter(|&g| g != 0)
                .map(|g| std::net::Ipv4Addr::from(g.swap_bytes())),
            _ => None,
        }
    })
}

/// Round trip, then throughput, to the server at `addr`.
pub fn measure(addr: SocketAddr, budget: Duration) -> Result<NetResults, Failure> {
    Ok(NetResults {
        rtt_us: round_trip_us(addr, budget)?,
        throughput_mb_s: throughput_mb_s(addr, budget)?,
    })
}

/// A connection to the server in `mode`, with TCP_NODELAY (a 1-byte ping must not wait
/// for Nagle) and timeouts (a vanished host must not hang the probe).
fn connect(addr: SocketAddr, mode: u8) -> Result<TcpStream, Failure> {
    let what = || format!("connect to the net server {addr}");
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).or_fail(what)?;
    stream.set_nodelay(true).or_fail(what)?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).or_fail(what)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).or_fail(what)?;
    stream.write_all(&[mode]).or_fail(what)?;
    Ok(stream)
}

/// Median of 1-byte ping-pongs over the budget, in microseconds.
pub fn round_trip_us(addr: SocketAddr, budget: Duration) -> Result<f64, Failure> {
    let mut stream = connect(addr, MODE_ECHO)?;
    let what = || format!("echo with the net server {addr}");
    let mut rtts: Vec<f64> = Vec::with_capacity(1 << 14);
    let mut byte = [0u8; 1];
    let start = Instant::now();
    loop {
        let sent = Instant::now();
        stream.write_all(&[0x5a]).or_fail(what)?;
        stream.read_exact(&mut byte).or_fail(what)?;
        let now = Instant::now();
        rtts.push((now - sent).as_secs_f64() * 1e6);
        if rtts.len() as u64 >= MIN_ROUND_TRIPS && now - start >= budget {
            break;
        }
    }
    rtts.sort_by(f64::total_cmp);
    Ok(rtts[rtts.len() / 2])
}

/// Bytes per second (MB/s, 10^6 bytes) of a bulk send, from the first write until the
/// server has confirmed it received every byte.
pub fn throughput_mb_s(addr: SocketAddr, budget: Duration) -> Result<f64, Failure> {
    let mut stream = connect(addr, MODE_SINK)?;
    let what = || format!("bulk send to the net server {addr}");
    let chunk = vec![0x5au8; CHUNK];
    let mut chunks: u64 = 0;
    let start = Instant::now();
    while chunks < MIN_CHUNKS || start.elapsed() < budget {
        stream.write_all(&chunk).or_fail(what)?;
        chunks += 1;
    }
    stream.shutdown(Shutdown::Write).or_fail(what)?;
    let mut count = [0u8; 8];
    stream.read_exact(&mut count).or_fail(what)?;
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let sent = chunks * CHUNK as u64;
    let received = u64::from_le_bytes(count);
    if received != sent {
        return Err(Failure::wrong(
            what(),
            format!("the server received {received} bytes of {sent}"),
        ));
    }
    Ok(sent as f64 / seconds / 1e6)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener};
    use std::thread;

    use super::*;
    use crate::net_server::serve;

    #[test]
    fn the_default_gateway_is_read_from_the_routing_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                     eth0\t00000000\t01E7E70A\t0003\t0\t0\t0\t00000000\n\
                     eth0\t00E7E70A\t00000000\t0001\t0\t0\t0\tFCFFFFFF\n";
        assert_eq!(
            default_gateway(table),
            Some(std::net::Ipv4Addr::new(10, 231, 231, 1))
        );
        assert_eq!(default_gateway("Iface\tDestination\tGateway\n"), None);
    }

    fn server() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || serve(listener));
        addr
    }

    #[test]
    fn round_trip_to_the_server_takes_some_time() {
        let rtt = round_trip_us(server(), Duration::from_millis(20)).unwrap();
        assert!(rtt > 0.0 && rtt.is_finite());
    }

    #[test]
    fn bulk_send_is_counted_by_the_server() {
        let mb_s = throughput_mb_s(server(), Duration::from_millis(20)).unwrap();
        assert!(mb_s > 0.0 && mb_s.is_finite());
    }

    #[test]
    fn a_server_that_miscounts_is_a_failure() {
        // A fake sink that reports one byte fewer than it received.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut total = 0u64;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            // The mode byte is not payload.
            let _ = stream.write_all(&(total - 2).to_le_bytes());
        });
        let e = throughput_mb_s(addr, Duration::from_millis(5)).unwrap_err();
        assert!(edge::error_chain(&e).contains("the server received"), "{e}");
    }

    #[test]
    fn an_unknown_mode_is_closed_by_the_server() {
        let mut stream = TcpStream::connect(server()).unwrap();
        stream.write_all(b"x").unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(stream.read(&mut buf).unwrap(), 0);
    }
}
