//! The relay once the name is read and the first bytes replayed: each direction moves
//! socket -> pipe -> socket with splice(2), so the bytes never cross into userspace
//! (the kernel hands the received pages on to the sending socket).
//!
//! A direction borrows a pipe from a shared pool only while it has bytes to move and
//! gives it back, empty, as soon as its socket has nothing more: an idle connection
//! holds no pipe and no buffer, only its two sockets. The few `unsafe` lines are plain
//! libc calls (pipe2, fcntl, splice) on descriptors owned here.
#![allow(unsafe_code)]

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// The size asked of each pipe (F_SETPIPE_SZ): what one splice can move at most. The
/// default 64 KiB pipe takes 16 pages, or fewer bytes when TCP hands smaller pieces;
/// measured (tests/bench byname), routerd's CPU per GiB relayed was about 0.55 s with
/// 64 KiB pipes and 0.40 s with 1 MiB ones. A pipe holds pages only while bytes are
/// in it.
pub const PIPE_SIZE: usize = 1 << 20;
/// Empty pipes kept for the next burst; more are closed when given back.
const SPARE_PIPES: usize = 64;
/// The most bytes all pipes together hold while reads are full-size: bytes wait in a
/// pipe while their receiver is slow, and pipe pages count in no socket's buffer
/// limit. Beyond it each read is [`SMALL_READ`], so many stalled receivers (say, a
/// client that stops reading its downloads on thousands of connections) pin at most
/// this plus [`SMALL_READ`] per direction: what the 16 KiB copy buffers of a
/// userspace relay would.
pub const BUDGET: usize = 32 << 20;
const SMALL_READ: usize = 16 * 1024;

/// A pipe with both ends non-blocking, and how much it holds.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new(size: usize) -> io::Result<Pipe> {
        let mut fds: [RawFd; 2] = [-1; 2];
        // SAFETY: pipe2(2) writes two descriptors into the array it is given.
        check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
        // SAFETY: both are fresh descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let asked = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl(2) F_SETPIPE_SZ / F_GETPIPE_SZ on our pipe.
        let mut capacity = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, asked) };
        if capacity < 0 {
            // Above the limit (fs.pipe-max-size, or the user's pipe quota): keep the
            // size it has.
            // SAFETY: as above.
            capacity = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        }
        Ok(Pipe {
            read,
            write,
            capacity: usize::try_from(capacity).unwrap_or(0).max(4096),
        })
    }
}

/// Empty pipes, shared by all connections.
pub struct Pipes {
    spare: Mutex<Vec<Pipe>>,
    size: usize,
    lent: AtomicUsize,
    /// Bytes in all pipes now, and the [`BUDGET`] for them.
    held: AtomicUsize,
    budget: usize,
}

impl Pipes {
    pub const fn new(size: usize) -> Pipes {
        Pipes::with_budget(size, BUDGET)
    }

    pub const fn with_budget(size: usize, budget: usize) -> Pipes {
        Pipes {
            spare: Mutex::new(Vec::new()),
            size,
            lent: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            budget,
        }
    }

    /// How much the next read into `pipe` may take.
    fn read_size(&self, pipe: &Pipe) -> usize {
        if self.held.load(Ordering::Relaxed) + pipe.capacity <= self.budget {
            pipe.capacity
        } else {
            SMALL_READ.min(pipe.capacity)
        }
    }

    /// Bytes in all pipes now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn take(&self) -> io::Result<Lent<'_>> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let pipe = spare.map_or_else(|| Pipe::new(self.size), Ok)?;
        self.lent.fetch_add(1, Ordering::Relaxed);
        Ok(Lent {
            pipe: Some(pipe),
            pool: self,
        })
    }

    /// Pipes in use now: as many as directions moving bytes.
    pub fn lent(&self) -> usize {
        self.lent.load(Ordering::Relaxed)
    }

    /// Empty pipes kept for the next burst.
    pub fn spare(&self) -> usize {
        self.spare.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A pipe taken from the pool: closed when dropped (it may hold bytes), back in the
/// pool with [`Lent::give_back`].
struct Lent<'a> {
    pipe: Option<Pipe>,
    pool: &'a Pipes,
}

impl Lent<'_> {
    fn pipe(&self) -> &Pipe {
        self.pipe.as_ref().expect("held until dropped")
    }

    /// Only for a pipe that is empty: its bytes would go to another connection.
    fn give_back(mut self) {
        let mut spare = self.pool.spare.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pipe) = self.pipe.take().filter(|_| spare.len() < SPARE_PIPES) {
            spare.push(pipe);
        }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.pool.lent.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Relays both ways between `client` and `upstream` until both have ended, or one
/// fails. When one side ends its sending, the other's is shut down after the last
/// byte, and the other direction goes on (half-close). Counts the bytes read from
/// each side.
pub async fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    pipes: &Pipes,
    from_client: &AtomicU64,
    from_upstream: &AtomicU64,
) -> io::Result<()> {
    tokio::try_join!(
        one_way(client, upstream, pipes, from_client),
        one_way(upstream, client, pipes, from_upstream)
    )?;
    Ok(())
}

/// Bytes read into a pipe and not written out yet, counted in the pool's
/// [`Pipes::held`] until written or dropped with their pipe.
struct Held<'a> {
    bytes: usize,
    pool: &'a Pipes,
}

impl<'a> Held<'a> {
    fn new(pool: &'a Pipes, bytes: usize) -> Held<'a> {
        pool.held.fetch_add(bytes, Ordering::Relaxed);
        Held { bytes, pool }
    }

    fn written(&mut self, n: usize) {
        let n = n.min(self.bytes);
        self.bytes -= n;
        self.pool.held.fetch_sub(n, Ordering::Relaxed);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.pool.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// How a burst of bytes ended.
enum Burst {
    /// The source has nothing more for now.
    Idle,
    /// The source has ended its sending.
    Ended,
}

async fn one_way(from: &TcpStream, to: &TcpStream, pipes: &Pipes, counter: &AtomicU64) -> io::Result<()> {
    loop {
        from.readable().await?;
        let pipe = pipes.take()?;
        // On an error the pipe (maybe holding bytes) is closed, not given back.
        let burst = burst(from, to, pipes, pipe.pipe(), counter).await?;
        pipe.give_back();
        if let Burst::Ended = burst {
            // Everything read has been written: pass the end on.
            return match socket2::SockRef::from(to).shutdown(Shutdown::Write) {
                // The other side may have gone already.
                Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
                _ => Ok(()),
            };
        }
    }
}

/// Moves bytes from `from` into the empty `pipe` and on to `to` until `from` has no
/// more; returns with the pipe empty again.
async fn burst(from: &TcpStream, to: &TcpStream, pipes: &Pipes, pipe: &Pipe, counter: &AtomicU64) -> io::Result<Burst> {
    loop {
        // The pipe is empty here, so a splice that would block means the socket has
        // nothing (and try_io then clears its readiness, to wait for more).
        let len = pipes.read_size(pipe);
        let read = from.try_io(Interest::READABLE, || {
            splice(from.as_raw_fd(), pipe.write.as_raw_fd(), len)
        });
        let read = match read {
            Ok(0) => return Ok(Burst::Ended),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Burst::Idle),
            Err(e) => return Err(e),
        };
        counter.fetch_add(read as u64, Ordering::Relaxed);
        let mut pending = Held::new(pipes, read);
        while pending.bytes > 0 {
            let written = to.try_io(Interest::WRITABLE, || {
                splice(pipe.read.as_raw_fd(), to.as_raw_fd(), pending.bytes)
            });
            match written {
                // Never with bytes in the pipe; not a reason to spin.
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => pending.written(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }
}

/// One splice(2) of at most `len` bytes, without blocking on the pipe (the sockets are
/// non-blocking themselves).
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice(2) between two open descriptors, no offsets (neither is a file).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Two connected pairs on loopback, the relay between their inner ends: returns
    /// (the client's end, the service's end, the relay's task, the pool, the counters).
    struct Relayed {
        client: TcpStream,
        service: TcpStream,
        relay: tokio::task::JoinHandle<io::Result<()>>,
        pipes: Arc<Pipes>,
        counted: Arc<[AtomicU64; 2]>,
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (outer, inner) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (outer.expect("connect"), inner.expect("accept").0)
    }

    async fn relayed(pipe_size: usize) -> Relayed {
        relayed_in(Arc::new(Pipes::new(pipe_size))).await
    }

    async fn relayed_in(pipes: Arc<Pipes>) -> Relayed {
        let (client, client_side) = pair().await;
        let (service, service_side) = pair().await;
        let counted: Arc<[AtomicU64; 2]> = Arc::default();
        let relay = tokio::spawn({
            let (pipes, counted) = (pipes.clone(), counted.clone());
            async move { relay(&client_side, &service_side, &pipes, &counted[0], &counted[1]).await }
        });
        Relayed {
            client,
            service,
            relay,
            pipes,
            counted,
        }
    }

    /// The `i`th byte of the stream `seed`: no short period, so a lost, doubled or
    /// reordered chunk shows.
    fn byte(seed: u64, i: u64) -> u8 {
        let x = (i ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (x >> 56) as u8 ^ (i >> 12) as u8
    }

    /// Sends `len` bytes of stream `seed`, then ends its sending.
    async fn send(mut w: tokio::net::tcp::OwnedWriteHalf, seed: u64, len: u64) {
        let mut chunk = vec![0u8; 256 * 1024];
        let mut at = 0u64;
        while at < len {
            let n = chunk.len().min(usize::try_from(len - at).expect("small"));
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = byte(seed, at + k as u64);
            }
            w.write_all(&chunk[..n]).await.expect("send");
            at += n as u64;
        }
        w.shutdown().await.expect("end");
    }

    /// Reads to the end; how many bytes, and whether each was stream `seed`'s.
    async fn receive(mut r: tokio::net::tcp::OwnedReadHalf, seed: u64) -> (u64, bool) {
        let mut chunk = vec![0u8; 256 * 1024];
        let (mut at, mut exact) = (0u64, true);
        loop {
            let n = r.read(&mut chunk).await.expect("receive");
            if n == 0 {
                return (at, exact);
            }
            exact &= chunk[..n]
                .iter()
                .enumerate()
                .all(|(k, b)| *b == byte(seed, at + k as u64));
            at += n as u64;
        }
    }

    #[tokio::test]
    async fn sixty_four_mib_both_ways_at_once_arrive_byte_exact_and_are_counted() {
        const LEN: u64 = 64 << 20;
        let r = relayed(PIPE_SIZE).await;
        let (client_r, client_w) = r.client.into_split();
        let (service_r, service_w) = r.service.into_split();
        let (_, _, up, down) = tokio::join!(
            send(client_w, 1, LEN),
            send(service_w, 2, LEN),
            receive(service_r, 1),
            receive(client_r, 2)
        );
        assert_eq!(up, (LEN, true), "client to service");
        assert_eq!(down, (LEN, true), "service to client");
        r.relay.await.expect("task").expect("the relay ends cleanly");
        assert_eq!(r.counted[0].load(Ordering::Relaxed), LEN);
        assert_eq!(r.counted[1].load(Ordering::Relaxed), LEN);
        assert_eq!(r.pipes.lent(), 0);
    }

    #[tokio::test]
    async fn a_small_pipe_still_moves_everything() {
        let r = relayed(4096).await;
        both_ways(r, 3 << 20).await;
    }

    #[tokio::test]
    async fn with_the_budget_spent_reads_are_small_and_still_move_everything() {
        let r = relayed_in(Arc::new(Pipes::with_budget(PIPE_SIZE, 0))).await;
        both_ways(r, 3 << 20).await;
    }

    #[tokio::test]
    async fn bytes_waiting_for_slow_receivers_are_held_within_the_budget() {
        // Room for one full-size read: while it waits, the other connection's are small.
        let pipes = Arc::new(Pipes::with_budget(PIPE_SIZE, PIPE_SIZE));
        let mut relays = Vec::new();
        let mut senders = Vec::new();
        for _ in 0..2 {
            let r = relayed_in(pipes.clone()).await;
            let (service_r, mut service_w) = r.service.into_split();
            // The client does not read: its socket buffers fill, then the pipe.
            senders.push(tokio::spawn(async move {
                let chunk = vec![7u8; 1 << 20];
                for _ in 0..64 {
                    if service_w.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                drop(service_r);
            }));
            relays.push(r.client);
        }
        let mut held = 0;
        for _ in 0..2000 {
            tokio::task::yield_now().await;
            held = held.max(pipes.held());
        }
        assert!(held > 2 * SMALL_READ, "bytes wait in the pipes for the clients: {held}");
        assert!(held <= PIPE_SIZE + SMALL_READ, "{held} bytes held");
        // Reading them all is still byte-exact.
        for client in &mut relays {
            let mut got = vec![0u8; 4 << 20];
            client.read_exact(&mut got).await.expect("the bytes");
            assert!(got.iter().all(|b| *b == 7));
        }
        for s in senders {
            s.abort();
        }
    }

    /// `len` bytes each way at once arrive byte-exact.
    async fn both_ways(r: Relayed, len: u64) {
        let (client_r, client_w) = r.client.into_split();
        let (service_r, service_w) = r.service.into_split();
        let (_, _, up, down) = tokio::join!(
            send(client_w, 3, len),
            send(service_w, 4, len),
            receive(service_r, 3),
            receive(client_r, 4)
        );
        assert_eq!((up, down), ((len, true), (len, true)));
        r.relay.await.expect("task").expect("clean");
    }

    #[tokio::test]
    async fn half_close_passes_the_end_on_and_the_other_way_goes_on() {
        let mut r = relayed(PIPE_SIZE).await;
        r.client.write_all(b"request").await.expect("send");
        r.client.shutdown().await.expect("end of the request");
        // The service reads the request to its end...
        let mut request = Vec::new();
        r.service.read_to_end(&mut request).await.expect("read");
        assert_eq!(request, b"request");
        // ...and answers after it, through the relay still open that way.
        for part in [&b"response, "[..], b"in parts"] {
            r.service.write_all(part).await.expect("answer");
            tokio::task::yield_now().await;
        }
        r.service.shutdown().await.expect("end");
        let mut response = Vec::new();
        r.client.read_to_end(&mut response).await.expect("read");
        assert_eq!(response, b"response, in parts");
        r.relay.await.expect("task").expect("clean");
        assert_eq!(r.pipes.lent(), 0);
        assert!(r.pipes.spare() >= 1, "the pipes went back to the pool");
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_pipe() {
        let mut r = relayed(PIPE_SIZE).await;
        let mut got = [0u8; 5];
        r.client.write_all(b"hello").await.expect("send");
        r.service.read_exact(&mut got).await.expect("relayed");
        r.service.write_all(b"world").await.expect("send");
        r.client.read_exact(&mut got).await.expect("relayed");
        assert_eq!(&got, b"world");
        // Both directions wait for more now: the relay runs until they give back.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(r.pipes.lent(), 0, "an idle connection holds no pipe");
        assert!(!r.relay.is_finished());
    }

    #[tokio::test]
    async fn a_reset_ends_the_relay_and_closes_the_other_side() {
        let mut r = relayed(PIPE_SIZE).await;
        r.client.write_all(b"x").await.expect("send");
        let mut got = [0u8; 1];
        r.service.read_exact(&mut got).await.expect("relayed");
        // SO_LINGER 0: close sends a reset.
        r.service.set_zero_linger().expect("linger");
        drop(r.service);
        assert!(r.relay.await.expect("task").is_err(), "a reset is an error");
        let mut rest = Vec::new();
        let ended = r.client.read_to_end(&mut rest).await;
        assert!(ended.is_err() || rest.is_empty(), "{ended:?}");
        assert_eq!(r.pipes.lent(), 0);
    }
}
