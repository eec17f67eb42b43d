//! A tiny nameserver on 127.0.0.1:0 (UDP and TCP on one port) that answers by the first
//! label's prefix, and counts the queries for each name: `many<N>-` N A records (too many
//! for UDP: truncated there), `silent-` nothing, `servfail-` SERVFAIL, `refused-` REFUSED,
//! `nx-` NXDOMAIN without an SOA, `ttl0-` A 127.0.0.1 with TTL 0, anything else A 127.0.0.1.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// Queries seen, by lower-case name without the root dot.
#[derive(Debug, Default, Clone)]
pub(crate) struct Queries(Arc<Mutex<HashMap<String, u64>>>);

impl Queries {
    pub(crate) fn of(&self, name: &str) -> u64 {
        self.0
            .lock()
            .expect("queries")
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

/// A UDP socket and a TCP listener on one free loopback port. The kernel picks the UDP port
/// alone, so that port may be taken for TCP (another test's connection): then another port.
async fn bind_udp_and_tcp() -> (UdpSocket, TcpListener, SocketAddr) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = udp.local_addr().expect("addr");
        match TcpListener::bind(addr).await {
            Ok(tcp) => return (udp, tcp, addr),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(error) => panic!("bind tcp: {error}"),
        }
    }
    panic!("no loopback port free for both UDP and TCP in 50 tries");
}

/// Starts the server; it runs until the test's runtime ends.
pub(crate) async fn start() -> (SocketAddr, Queries) {
    let (udp, tcp, addr) = bind_udp_and_tcp().await;
    let queries = Queries::default();
    let seen = queries.clone();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok((n, peer)) = udp.recv_from(&mut buffer).await {
            if let Some(reply) = answer(&buffer[..n], &seen, true) {
                let _ = udp.send_to(&reply, peer).await;
            }
        }
    });
    let seen = queries.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = tcp.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                loop {
                    let mut length = [0u8; 2];
                    if socket.read_exact(&mut length).await.is_err() {
                        return;
                    }
                    let mut query = vec![0u8; usize::from(u16::from_be_bytes(length))];
                    if socket.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    let Some(reply) = answer(&query, &seen, false) else {
                        // Silent: hold the connection open.
                        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                        return;
                    };
                    let length = u16::try_from(reply.len()).expect("reply fits tcp");
                    let _ = socket.write_all(&length.to_be_bytes()).await;
                    let _ = socket.write_all(&reply).await;
                }
            });
        }
    });
    (addr, queries)
}

fn answer(query: &[u8], seen: &Queries, udp: bool) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let question = request.queries().first()?.clone();
    let name = question
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    *seen
        .0
        .lock()
        .expect("queries")
        .entry(name.clone())
        .or_default() += 1;
    let mut reply = Message::new();
    reply
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(true)
        .set_recursion_available(true)
        .add_query(question.clone());
    let first = name.split('.').next().unwrap_or_default();
    let a =
        |ttl: u32, ip: Ipv4Addr| Record::from_rdata(question.name().clone(), ttl, RData::A(A(ip)));
    if first.starts_with("silent-") {
        return None;
    } else if first.starts_with("servfail-") {
        reply.set_response_code(ResponseCode::ServFail);
    } else if first.starts_with("refused-") {
        reply.set_response_code(ResponseCode::Refused);
    } else if first.starts_with("nx-") {
        reply.set_response_code(ResponseCode::NXDomain);
    } else if question.query_type() != RecordType::A {
        // NOERROR without records (and without an SOA).
    } else if let Some(rest) = first.strip_prefix("many") {
        let count: u32 = rest.split('-').next()?.parse().ok()?;
        if udp && count > 20 {
            reply.set_truncated(true);
        } else {
            for index in 0..count {
                reply.add_answer(a(300, Ipv4Addr::from(0x0b00_0000 + index)));
            }
        }
    } else if first.starts_with("ttl0-") {
        reply.add_answer(a(0, Ipv4Addr::LOCALHOST));
    } else {
        reply.add_answer(a(300, Ipv4Addr::LOCALHOST));
    }
    reply.to_vec().ok()
}
