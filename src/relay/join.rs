//! The join: two WebSocket connections relayed to each other, message by message, until
//! both close, either fails, or the keys that admitted the sender are withdrawn.

use std::future::Future;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::transport::CHUNK;
use crate::transport::ws::{Event, FrameReader, FrameWriter, Role, close};

/// After a revocation, how long the two directions have to write their 1008 Close before
/// the join is dropped: RFC 6455 leaves the wait to the endpoint, and the gate's own is 5 s.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Joins two WebSocket connections frame by frame, each direction with backpressure: each
/// data frame (text or binary, up to `max_frame`, fragmented or not) is written again with
/// the same opcode, FIN bit and length, its payload streamed through in pieces and unmasked
/// as a server writes, so messages keep their kind and their boundaries; pings are passed on
/// with their payload, pongs as empty pongs (any frame tells a keepalive that its peer is
/// there), and a Close with its code and reason. Not byte for byte: the two sides mask
/// differently. The join ends when both sides have closed or either connection fails;
/// when `revoked` resolves first, each side is sent a 1008 Close with its reason (within
/// [`CLOSE_GRACE`]) and the join ends. Payload bytes are counted on `counted` (a to b, b to
/// a).
pub async fn join<A, B>(
    a: A,
    a_leftover: &[u8],
    b: B,
    b_leftover: &[u8],
    max_frame: u64,
    revoked: impl Future<Output = String>,
    counted: (Counter, Counter),
) where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let (stop, stopped) = watch::channel(None::<String>);
    let ab = pump(
        FrameReader::new(ar, Role::Server, max_frame, CHUNK)
            .with_leftover(a_leftover)
            .relaying(),
        FrameWriter::new(bw, Role::Server),
        stopped.clone(),
        counted.0,
    );
    let ba = pump(
        FrameReader::new(br, Role::Server, max_frame, CHUNK)
            .with_leftover(b_leftover)
            .relaying(),
        FrameWriter::new(aw, Role::Server),
        stopped,
        counted.1,
    );
    let pumps = async {
        tokio::pin!(ab, ba);
        // A direction that ends with a Close lets the other finish; one that fails ends both.
        tokio::select! {
            closed = &mut ab => if closed { ba.await; },
            closed = &mut ba => if closed { ab.await; },
        }
    };
    tokio::pin!(pumps, revoked);
    tokio::select! {
        () = &mut pumps => {}
        why = &mut revoked => {
            stop.send_replace(Some(why));
            let _ = tokio::time::timeout(CLOSE_GRACE, pumps).await;
        }
    }
}

/// Forwards one direction; `true` if it ended with a Close. When `stop` holds a reason, the
/// next wait for a frame ends instead with a 1008 Close carrying it.
async fn pump<R, W>(
    mut from: FrameReader<R>,
    mut to: FrameWriter<W>,
    mut stop: watch::Receiver<Option<String>>,
    counted: Counter,
) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let next = tokio::select! {
            next = from.next() => Some(next),
            _ = stop.wait_for(Option::is_some) => None,
        };
        let Some(next) = next else {
            let why = stop.borrow().clone().unwrap_or_default();
            let _ = to.send_close(close::POLICY, &why).await;
            return true;
        };
        let result = match next {
            Ok(Event::FrameStart(start)) => to.start_frame(start).await,
            Ok(Event::Data(d)) => {
                counted.inc_by(d.len() as u64);
                to.send_piece(d).await
            }
            Ok(Event::Ping(p)) => to.send_ping(&p).await,
            Ok(Event::Pong) => to.send_pong(&[]).await,
            Ok(Event::Close(c)) => {
                let code = if c.code == 1005 {
                    close::NORMAL
                } else {
                    c.code
                };
                let _ = to.send_close(code, &c.reason).await;
                return true;
            }
            Err(e) => {
                if let Some(code) = e.close_code() {
                    let _ = to.send_close(code, &e.to_string()).await;
                }
                return false;
            }
        };
        if result.is_err() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ws::HEADROOM;

    #[tokio::test]
    async fn join_passes_frames_larger_than_its_read_chunk_whole_and_in_order() {
        // Room for the whole frame, so that the relay reads it in pieces over 64 KiB.
        let (a_client, a_relay) = tokio::io::duplex(1 << 20);
        let (b_client, b_relay) = tokio::io::duplex(64 * 1024);
        let joined = tokio::spawn(join(
            a_relay,
            &[],
            b_relay,
            &[],
            1 << 20,
            std::future::pending(),
            Default::default(),
        ));
        let data: Vec<u8> = (0..(CHUNK + 100_000) as u32)
            .map(|i| (i % 253) as u8)
            .collect();
        let sent = data.clone();
        let (a_r, a_w) = tokio::io::split(a_client);
        let sender = tokio::spawn(async move {
            let mut w = FrameWriter::new(a_w, Role::Client);
            let mut frame = vec![0u8; HEADROOM + sent.len()];
            frame[HEADROOM..].copy_from_slice(&sent);
            w.send_binary(&mut frame, sent.len()).await.unwrap();
            w.send_close(close::NORMAL, "").await.unwrap();
            (w, a_r)
        });
        let (b_r, mut b_w) = tokio::io::split(b_client);
        let mut reader = FrameReader::new(b_r, Role::Client, 1 << 20, 64 * 1024);
        let mut got = Vec::new();
        let close = loop {
            match reader.next().await.unwrap() {
                Event::Data(d) => got.extend_from_slice(d),
                Event::Close(c) => break c,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(close.code, close::NORMAL);
        assert_eq!(got.len(), data.len());
        assert!(got == data, "the bytes changed on the way");
        // The other direction closes too, and the join ends.
        let mut closer = FrameWriter::new(&mut b_w, Role::Client);
        closer.send_close(close::NORMAL, "").await.unwrap();
        let _keep_a_open = sender.await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), joined)
            .await
            .expect("the join ends once both sides closed")
            .unwrap();
    }
}
