//! The join: two WebSocket connections relayed to each other, frame by frame, until both
//! close, either fails, or the keys that admitted the session are withdrawn.

use std::future::Future;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::transport::CHUNK;
use crate::transport::ws::{Event, FrameReader, FrameWriter, Role, close};

/// How long a side has to answer the other's Close, and, after a revocation, how long the
/// two directions have to finish the frame in flight and write their 1008 Close: RFC 6455
/// leaves the wait to the endpoint, and the gate's own is 5 s.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What bounds a join.
#[derive(Debug, Clone, Copy)]
pub struct JoinLimits {
    /// Largest data frame relayed.
    pub max_frame: u64,
    /// A write that makes no progress for this long fails the join: a side that stops
    /// reading must not hold the other, and the relay's buffers, for ever.
    pub stall: Duration,
}

/// Joins two WebSocket connections, `a` the sender's and `b` the listener's, frame by frame,
/// each direction with backpressure: each data frame (text or binary, up to `max_frame`,
/// fragmented or not) is written again with the same opcode, FIN bit and length, its payload
/// streamed through in pieces and unmasked as a server writes, so messages keep their kind
/// and their boundaries; pings are passed on with their payload, pongs as empty pongs (any
/// frame tells a keepalive that its peer is there), and a Close with its code and reason. Not
/// byte for byte: the two sides mask differently.
///
/// The join ends when either connection fails, or when both sides have closed: a sender's
/// Close is a half-close (SPEC §2: the gate goes on sending until its service is done), a
/// listener's Close is answered within 5 s (`CLOSE_GRACE`) or the join ends. When `revoked`
/// resolves first, each side is sent a 1008 Close with its reason once the frame in flight
/// is through (all within the same 5 s). Payload bytes are counted on `counted` (a to b,
/// b to a). `revoked` is `Unpin` (the caller boxes it once): an async function keeps room
/// for its arguments for its whole life, so a future given by value would be held twice
/// in every relayed session, once as given and once pinned.
pub async fn join<A, B>(
    a: A,
    a_leftover: &[u8],
    b: B,
    b_leftover: &[u8],
    limits: JoinLimits,
    mut revoked: impl Future<Output = String> + Unpin,
    counted: (Counter, Counter),
) where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let (stop, stopped) = watch::channel(None::<String>);
    // Pinned here, and the block below borrows them: moved into it, each would be held
    // twice, as the block's capture and as its pinned local.
    let mut to_listener = std::pin::pin!(pump(
        reader(ar, a_leftover, limits),
        writer(bw, limits),
        stopped.clone(),
        counted.0,
    ));
    let mut to_sender = std::pin::pin!(pump(
        reader(br, b_leftover, limits),
        writer(aw, limits),
        stopped,
        counted.1,
    ));
    let pumps = async {
        // A direction that fails ends both.
        tokio::select! {
            closed = &mut to_listener => if closed { to_sender.await; },
            closed = &mut to_sender => if closed {
                let _ = tokio::time::timeout(CLOSE_GRACE, to_listener).await;
            },
        }
    };
    tokio::pin!(pumps);
    tokio::select! {
        // Checked first: a session whose key is already withdrawn relays nothing more.
        biased;
        why = &mut revoked => {
            stop.send_replace(Some(why));
            let _ = tokio::time::timeout(CLOSE_GRACE, pumps).await;
        }
        () = &mut pumps => {}
    }
}

fn reader<R: AsyncRead + Unpin>(r: R, leftover: &[u8], limits: JoinLimits) -> FrameReader<R> {
    FrameReader::new(r, Role::Server, limits.max_frame, CHUNK)
        .with_leftover(leftover)
        .relaying()
}

fn writer<W: AsyncWrite + Unpin>(w: W, limits: JoinLimits) -> FrameWriter<W> {
    FrameWriter::new(w, Role::Server).with_stall_limit(Some(limits.stall))
}

/// Forwards one direction; `true` if it ended with a Close. When `stop` holds a reason, the
/// direction ends with a 1008 Close carrying it, at the next frame boundary: a Close written
/// inside a frame's payload would be read as data.
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
    // Payload bytes of the current frame not yet relayed.
    let mut owed = 0u64;
    loop {
        let next = if owed > 0 {
            Some(from.next().await)
        } else {
            tokio::select! {
                biased;
                _ = stop.wait_for(Option::is_some) => None,
                next = from.next() => Some(next),
            }
        };
        let Some(next) = next else {
            let why = stop.borrow().clone().unwrap_or_default();
            let _ = to.send_close(close::POLICY, &why).await;
            return true;
        };
        let result = match next {
            Ok(Event::FrameStart(start)) => {
                owed = start.len;
                to.start_frame(start).await
            }
            Ok(Event::Data(d)) => {
                owed = owed.saturating_sub(d.len() as u64);
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
                // Mid-frame, the other side can only be cut off: a Close would be payload.
                if let (Some(code), 0) = (e.close_code(), owed) {
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

    /// `join` of two in-memory connections, in its own task.
    fn joined<A, B>(
        a: A,
        b: B,
        revoked: impl Future<Output = String> + Send + 'static,
    ) -> tokio::task::JoinHandle<()>
    where
        A: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        B: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = JoinLimits {
            max_frame: 1 << 20,
            stall: Duration::from_secs(10),
        };
        let revoked = Box::pin(revoked);
        tokio::spawn(async move { join(a, &[], b, &[], limits, revoked, Default::default()).await })
    }

    #[tokio::test]
    async fn join_passes_frames_larger_than_its_read_chunk_whole_and_in_order() {
        // Room for the whole frame, so that the relay reads it in pieces over 64 KiB.
        let (a_client, a_relay) = tokio::io::duplex(1 << 20);
        let (b_client, b_relay) = tokio::io::duplex(64 * 1024);
        let joined = joined(a_relay, b_relay, std::future::pending());
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

    #[tokio::test]
    async fn a_revocation_mid_frame_lets_the_frame_finish_then_closes_with_1008() {
        use tokio::io::AsyncWriteExt;
        let (mut a_client, a_relay) = tokio::io::duplex(1 << 20);
        let (b_client, b_relay) = tokio::io::duplex(1 << 20);
        let (revoke, revoked) = tokio::sync::oneshot::channel::<()>();
        let joined = joined(a_relay, b_relay, async move {
            let _ = revoked.await;
            "key 'users' removed".to_string()
        });
        // A masked 100,000-byte binary frame (zero mask), its payload in two halves with the
        // revocation between them.
        let len = 100_000usize;
        let mut head = vec![0x82, 0x80 | 127];
        head.extend_from_slice(&(len as u64).to_be_bytes());
        head.extend_from_slice(&[0, 0, 0, 0]);
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        a_client.write_all(&head).await.unwrap();
        a_client.write_all(&payload[..len / 2]).await.unwrap();
        let (b_r, _b_w) = tokio::io::split(b_client);
        let mut reader = FrameReader::new(b_r, Role::Client, 1 << 20, 4096);
        let mut got = Vec::new();
        while got.len() < len / 2 {
            match reader.next().await.unwrap() {
                Event::Data(d) => got.extend_from_slice(d),
                other => panic!("unexpected {other:?}"),
            }
        }
        revoke.send(()).unwrap();
        a_client.write_all(&payload[len / 2..]).await.unwrap();
        let close = loop {
            match reader.next().await.unwrap() {
                Event::Data(d) => got.extend_from_slice(d),
                Event::Close(c) => break c,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert!(got == payload, "the frame in flight arrives whole");
        assert_eq!(close.code, close::POLICY);
        assert_eq!(close.reason, "key 'users' removed");
        tokio::time::timeout(Duration::from_secs(10), joined)
            .await
            .expect("the join ends within its grace")
            .unwrap();
    }
}
