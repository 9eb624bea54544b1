//! A TCP proxy that puts network faults between the yuba binaries and the local servers.
//!
//! The local servers never fail on their own, so the retry, timeout and resume paths of the
//! S3, SQS and GCS clients would go untested without something in between that does: this
//! proxy forwards bytes unchanged until a test asks it to slow them down, cut a connection half
//! way through a body, swallow traffic, or behave like a server that restarts. It works on TCP
//! and knows nothing of HTTP, so what it breaks is what a network breaks.
//!
//! It listens on loopback only. Every task it starts ends when the last handle to it is
//! dropped, and every wait inside it is bounded.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

/// The most one read takes off a socket: one chunk of the delay line.
const CHUNK_BYTES: usize = 64 * 1024;
/// Bytes read but not yet written, per direction: lets latency delay bytes without capping
/// throughput at one chunk per latency, while bounding what the proxy holds. Counted in bytes,
/// not chunks, so that a server that writes in small pieces (a loaded one) can still have as
/// much answered while responses are held.
const BYTES_IN_FLIGHT: u32 = 1 << 20;
/// How long a connection that arrives before [`FaultProxy::forward_to`] waits for it.
const UPSTREAM_WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a planned reset waits after its last byte: a RST throws away what the kernel has
/// not sent yet, so without it a client that reads slowly would see far fewer bytes than
/// planned, and one that has not finished connecting would see its connect fail.
const CUT_GRACE: Duration = Duration::from_millis(50);

/// Which bytes count towards a reset planned with [`FaultProxy::reset_next_toward`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetDirection {
    /// From the server to the client: cuts a response body (a download) half way.
    ToClient,
    /// From the client to the server: cuts a request body (an upload) half way.
    ToUpstream,
    /// Both directions together: for faults that should land wherever the bytes are.
    Either,
}

impl ResetDirection {
    fn counts(self, direction: Flow) -> bool {
        matches!(
            (self, direction),
            (ResetDirection::Either, _)
                | (ResetDirection::ToClient, Flow::ToClient)
                | (ResetDirection::ToUpstream, Flow::ToUpstream)
        )
    }
}

/// Random faults for soak tests: every new connection draws from one seeded generator, so a
/// failing run can be replayed with its seed (given the same order of connections).
#[derive(Debug, Clone, PartialEq)]
pub struct Chaos {
    pub seed: u64,
    /// Chance that a new connection is reset once a random number of bytes, up to
    /// `max_reset_after_bytes`, has passed in either direction.
    pub reset_probability: f64,
    pub max_reset_after_bytes: u64,
    /// Chance that a new connection delays each of its chunks by a random extra latency, up to
    /// `max_latency`, on top of [`FaultProxy::set_latency`].
    pub latency_probability: f64,
    pub max_latency: Duration,
}

/// What the proxy has done so far, by kind: printed at the end of a soak test, so a run that
/// passed can be told from a run that injected nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Connections accepted, including those refused during an outage.
    pub connections: u64,
    /// Connections reset by [`FaultProxy::reset_next`] or [`Chaos`] once their bytes ran out.
    pub resets: u64,
    /// Open connections reset when an outage began.
    pub reset_by_outage: u64,
    /// New connections reset at once because an outage was under way.
    pub refused_in_outage: u64,
    /// Connections that had at least one chunk held back by latency.
    pub delayed_connections: u64,
    /// Connections whose bytes a black hole swallowed (closed when the window ended).
    pub blackholed_connections: u64,
    /// Bytes forwarded (not swallowed) from clients to the server.
    pub bytes_to_upstream: u64,
    /// Bytes forwarded (not swallowed) from the server to clients.
    pub bytes_to_client: u64,
    /// Bytes read from the server, forwarded yet or not.
    pub bytes_from_upstream: u64,
}

impl fmt::Display for FaultStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections: {} reset, {} reset by outages, {} refused in outages, {} delayed, \
             {} black-holed; {} bytes to upstream, {} bytes to clients",
            self.connections,
            self.resets,
            self.reset_by_outage,
            self.refused_in_outage,
            self.delayed_connections,
            self.blackholed_connections,
            self.bytes_to_upstream,
            self.bytes_to_client
        )
    }
}

/// A fault-injecting TCP proxy on loopback. Cheap to clone; the proxy, its listener and all
/// its connections stop when the last clone is dropped.
#[derive(Clone)]
pub struct FaultProxy {
    handle: Arc<Handle>,
}

/// The owners' side: dropping the last one stops the tasks, which hold only [`Shared`].
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr())
            .field("upstream", &self.shared().control.borrow().upstream)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1.
    pub async fn listen() -> io::Result<FaultProxy> {
        FaultProxy::listen_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Listens on port 80 of a fresh random `127.A.B.C` (needs root, as fake-gcs-server does).
    ///
    /// Needed in front of fake-gcs-server: the GCS crate sends `Host` without the port, and
    /// fake-gcs-server builds a resumable upload's `Location` from `Host` (not from
    /// `-external-url`), so the upload's second request goes to port 80 of the address the
    /// client dialled. On port 80 of its own address the proxy is where that request lands.
    pub async fn listen_port_80() -> io::Result<FaultProxy> {
        let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no attempt made");
        for _ in 0..50 {
            let [a, b, c] = rand::random::<[u8; 3]>();
            let ip = Ipv4Addr::new(127, a.max(1), b, c.clamp(1, 254));
            match FaultProxy::listen_on(SocketAddr::from((ip, 80))).await {
                Ok(proxy) => return Ok(proxy),
                Err(error) if error.kind() == io::ErrorKind::AddrInUse => last = error,
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    /// Listens on `addr`, which must be a loopback address (port 0: any free port).
    pub async fn listen_on(addr: SocketAddr) -> io::Result<FaultProxy> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the fault proxy listens on loopback only, not {addr}"),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (control, _) = watch::channel(Control::default());
        let shared = Arc::new(Shared {
            addr,
            url: format!("http://{addr}"),
            control,
            armed: Mutex::new(None),
            chaos: Mutex::new(None),
            counters: Counters::default(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(accept_loop(Arc::clone(&shared), listener));
        Ok(FaultProxy {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Sets where connections go; set after [`listen`](FaultProxy::listen) because a server
    /// may need the proxy's URL before it can start. Connections that arrived earlier wait for
    /// it (up to 30 s); open connections keep the upstream they have.
    pub fn forward_to(&self, upstream: SocketAddr) {
        self.shared()
            .control
            .send_modify(|control| control.upstream = Some(upstream));
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared().addr
    }

    /// `http://IP:PORT`, for an endpoint variable.
    pub fn url(&self) -> &str {
        &self.shared().url
    }

    /// Delays every chunk, both ways, on new and open connections: a slow or distant network,
    /// for timeouts and for overlap between concurrent requests. `Duration::ZERO`: off.
    pub fn set_latency(&self, latency: Duration) {
        self.shared()
            .control
            .send_modify(|control| control.latency = latency);
    }

    /// Resets the next `connections` connections once `after_bytes` bytes of a response have
    /// reached the client: a download cut half way. See
    /// [`reset_next_toward`](FaultProxy::reset_next_toward).
    pub fn reset_next(&self, connections: usize, after_bytes: u64) {
        self.reset_next_toward(ResetDirection::ToClient, connections, after_bytes);
    }

    /// Resets (TCP RST) the next `connections` connections to carry bytes in `direction`, once
    /// `after_bytes` such bytes have been forwarded: the bytes up to the cut arrive (they get
    /// 50 ms to drain first), then the connection fails, as when a server or a middlebox dies
    /// mid-body; nothing more is forwarded either way meanwhile. A connection counts
    /// from the first byte it carries after this call, whether new or reused, because HTTP
    /// clients send their next request on a pooled connection. A connection that closes before
    /// its count is reached is not reset, and still uses up its turn. Replaces any plan still
    /// pending; `connections == 0` cancels it.
    pub fn reset_next_toward(
        &self,
        direction: ResetDirection,
        connections: usize,
        after_bytes: u64,
    ) {
        *lock(&self.shared().armed) = (connections > 0).then_some(Armed {
            connections,
            direction,
            after_bytes,
        });
    }

    /// Swallows every byte, on new and open connections, for `window`: nothing is forwarded,
    /// nothing answered, and the connections stay open, so clients meet their own timeouts (a
    /// partition, or a server that hangs). When the window ends, the connections that lost
    /// bytes are reset (their streams are broken) and the others carry on. A new call replaces
    /// the window; `Duration::ZERO` ends it now.
    pub fn blackhole_for(&self, window: Duration) {
        let until = Instant::now() + window;
        self.shared()
            .control
            .send_modify(|control| control.blackhole_until = Some(until));
    }

    /// A server restart: every open connection is reset at once, and new ones are reset as
    /// soon as they are accepted until `window` has passed. `Duration::ZERO` resets the open
    /// connections and nothing else.
    pub fn outage_for(&self, window: Duration) {
        let until = Instant::now() + window;
        self.shared().control.send_modify(|control| {
            control.outage_until = Some(until);
            control.outage_epoch += 1;
        });
    }

    /// Random faults on every new connection, for soak tests; `None`: off. Setting the same
    /// seed again starts its sequence over.
    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        *lock(&self.shared().chaos) = chaos.map(|chaos| {
            let rng = StdRng::seed_from_u64(chaos.seed);
            (chaos, rng)
        });
    }

    /// Holds back every byte from the server to clients, on open and new connections, until
    /// [`release`](FaultProxy::release): what the server has answered by then is known (see
    /// [`FaultStats::bytes_from_upstream`]) while the clients have not seen it, which orders a
    /// slow reader's view against other clients' writes.
    pub fn hold_responses(&self) {
        self.shared()
            .control
            .send_modify(|control| control.holding_responses = true);
    }

    /// Lets held responses go on.
    pub fn release(&self) {
        self.shared()
            .control
            .send_modify(|control| control.holding_responses = false);
    }

    /// Switches every fault off: no latency, no pending resets, no chaos, and any black hole or
    /// outage ends now (black-holed connections are reset, as when a window ends).
    pub fn heal(&self) {
        *lock(&self.shared().armed) = None;
        *lock(&self.shared().chaos) = None;
        self.shared().control.send_modify(|control| {
            control.latency = Duration::ZERO;
            control.blackhole_until = None;
            control.outage_until = None;
            control.holding_responses = false;
        });
    }

    pub fn stats(&self) -> FaultStats {
        self.shared().counters.snapshot()
    }
}

/// The switches, watched by the connections so that a change reaches open ones at once.
#[derive(Debug, Clone, Default)]
struct Control {
    upstream: Option<SocketAddr>,
    latency: Duration,
    blackhole_until: Option<Instant>,
    outage_until: Option<Instant>,
    /// Bumped by every outage: a connection accepted under an older one is reset.
    outage_epoch: u64,
    holding_responses: bool,
}

impl Control {
    fn blackholed(&self, now: Instant) -> bool {
        self.blackhole_until.is_some_and(|until| until > now)
    }

    fn in_outage(&self, now: Instant) -> bool {
        self.outage_until.is_some_and(|until| until > now)
    }
}

/// A pending [`FaultProxy::reset_next_toward`].
#[derive(Debug, Clone, Copy)]
struct Armed {
    connections: usize,
    direction: ResetDirection,
    after_bytes: u64,
}

/// A reset one connection has taken on: after `left` more bytes in `direction`.
#[derive(Debug, Clone, Copy)]
struct Plan {
    direction: ResetDirection,
    left: u64,
}

struct Shared {
    addr: SocketAddr,
    url: String,
    control: watch::Sender<Control>,
    armed: Mutex<Option<Armed>>,
    chaos: Mutex<Option<(Chaos, StdRng)>>,
    counters: Counters,
    stop: CancellationToken,
}

impl Shared {
    /// Hands one turn of the pending reset plan to a connection about to forward bytes in
    /// `flow`, if the plan counts those bytes.
    fn claim(&self, flow: Flow) -> Option<Plan> {
        let mut armed = lock(&self.armed);
        let plan = armed
            .as_mut()
            .filter(|armed| armed.direction.counts(flow))?;
        let claimed = Plan {
            direction: plan.direction,
            left: plan.after_bytes,
        };
        plan.connections -= 1;
        if plan.connections == 0 {
            *armed = None;
        }
        Some(claimed)
    }

    /// A new connection's draw from the chaos generator: a reset plan and an extra latency.
    /// All four numbers are drawn every time, so each connection's faults depend only on the
    /// seed and its position.
    fn draw_chaos(&self) -> (Option<Plan>, Duration) {
        let mut chaos = lock(&self.chaos);
        let Some((settings, rng)) = chaos.as_mut() else {
            return (None, Duration::ZERO);
        };
        let reset = rng.random_bool(probability(settings.reset_probability));
        let after_bytes = rng.random_range(0..=settings.max_reset_after_bytes);
        let delay = rng.random_bool(probability(settings.latency_probability));
        let latency = settings.max_latency.mul_f64(rng.random::<f64>());
        let plan = reset.then_some(Plan {
            direction: ResetDirection::Either,
            left: after_bytes,
        });
        (plan, if delay { latency } else { Duration::ZERO })
    }
}

fn probability(p: f64) -> f64 {
    if p >= 1.0 {
        1.0
    } else if p > 0.0 {
        p
    } else {
        0.0 // and NaN
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    resets: AtomicU64,
    reset_by_outage: AtomicU64,
    refused_in_outage: AtomicU64,
    delayed_connections: AtomicU64,
    blackholed_connections: AtomicU64,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
    bytes_from_upstream: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> FaultStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FaultStats {
            connections: get(&self.connections),
            resets: get(&self.resets),
            reset_by_outage: get(&self.reset_by_outage),
            refused_in_outage: get(&self.refused_in_outage),
            delayed_connections: get(&self.delayed_connections),
            blackholed_connections: get(&self.blackholed_connections),
            bytes_to_upstream: get(&self.bytes_to_upstream),
            bytes_to_client: get(&self.bytes_to_client),
            bytes_from_upstream: get(&self.bytes_from_upstream),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = shared.stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, _)) => {
                tokio::spawn(serve(Arc::clone(&shared), client));
            }
            // Out of file descriptors and the like: pause rather than spin.
            Err(_) => tokio::select! {
                () = shared.stop.cancelled() => return,
                () = sleep(Duration::from_millis(10)) => {}
            },
        }
    }
}

/// The way bytes go on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    ToUpstream,
    ToClient,
}

/// One connection's share of the faults.
struct Conn {
    plan: Mutex<Option<Plan>>,
    extra_latency: Duration,
    delayed: AtomicBool,
    blackholed: AtomicBool,
    became_blackholed: Notify,
}

impl Conn {
    /// How many bytes in `flow` may still go before the reset, if one is planned.
    fn budget(&self, shared: &Shared, flow: Flow) -> Option<u64> {
        let mut plan = lock(&self.plan);
        if plan.is_none() {
            *plan = shared.claim(flow);
        }
        plan.filter(|plan| plan.direction.counts(flow))
            .map(|plan| plan.left)
    }

    fn spend(&self, bytes: u64) {
        if let Some(plan) = lock(&self.plan).as_mut() {
            plan.left = plan.left.saturating_sub(bytes);
        }
    }

    fn note_delayed(&self, shared: &Shared) {
        if !self.delayed.swap(true, Ordering::Relaxed) {
            bump(&shared.counters.delayed_connections, 1);
        }
    }

    fn note_blackholed(&self, shared: &Shared) {
        if !self.blackholed.swap(true, Ordering::Relaxed) {
            bump(&shared.counters.blackholed_connections, 1);
            self.became_blackholed.notify_one();
        }
    }
}

/// Why a connection ended other than by both sides closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Its planned reset came due.
    Planned,
    /// An outage began.
    Outage,
    /// The black hole that swallowed its bytes ended.
    BlackholeOver,
    /// One side failed (reset, or gone): the other is reset too, as it would see.
    PeerFailed,
    /// The proxy was dropped.
    Stopped,
}

enum Item {
    /// A chunk, when it may be written, and its share of the direction's [`BYTES_IN_FLIGHT`].
    Data(Bytes, Instant, OwnedSemaphorePermit),
    Eof,
}

async fn serve(shared: Arc<Shared>, mut client: TcpStream) {
    bump(&shared.counters.connections, 1);
    let mut control = shared.control.subscribe();
    let epoch = {
        let now = Instant::now();
        let current = control.borrow_and_update();
        if current.in_outage(now) {
            bump(&shared.counters.refused_in_outage, 1);
            drop(current);
            abort(&client);
            return;
        }
        current.outage_epoch
    };
    let (plan, extra_latency) = shared.draw_chaos();
    let conn = Conn {
        plan: Mutex::new(plan),
        extra_latency,
        delayed: AtomicBool::new(false),
        blackholed: AtomicBool::new(false),
        became_blackholed: Notify::new(),
    };
    let upstream = tokio::select! {
        () = shared.stop.cancelled() => None,
        upstream = connect_upstream(control.clone()) => upstream,
    };
    let Some(mut upstream) = upstream else {
        abort(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let outcome = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let (to_upstream, from_client) = delay_line();
        let (to_client, from_upstream) = delay_line();
        let pumps = async {
            tokio::try_join!(
                read_side(client_read, to_upstream, &shared, &conn, Flow::ToUpstream),
                write_side(
                    upstream_write,
                    from_client,
                    &shared,
                    &conn,
                    Flow::ToUpstream
                ),
                read_side(upstream_read, to_client, &shared, &conn, Flow::ToClient),
                write_side(client_write, from_upstream, &shared, &conn, Flow::ToClient),
            )
            .map(|_| ())
        };
        tokio::select! {
            () = shared.stop.cancelled() => Err(Cut::Stopped),
            cut = supervise(&mut control, &conn, epoch) => Err(cut),
            done = pumps => done,
        }
    };
    let Err(cut) = outcome else {
        return; // both sides closed, and their closes were passed on
    };
    if cut == Cut::Planned {
        tokio::select! {
            () = shared.stop.cancelled() => {}
            () = sleep(CUT_GRACE) => {}
        }
    }
    match cut {
        Cut::Planned => bump(&shared.counters.resets, 1),
        Cut::Outage => bump(&shared.counters.reset_by_outage, 1),
        Cut::BlackholeOver | Cut::PeerFailed | Cut::Stopped => {}
    }
    abort(&client);
    abort(&upstream);
}

/// Makes dropping `stream` send a RST instead of a FIN.
fn abort(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn connect_upstream(mut control: watch::Receiver<Control>) -> Option<TcpStream> {
    let upstream = timeout(
        UPSTREAM_WAIT,
        control.wait_for(|control| control.upstream.is_some()),
    )
    .await
    .ok()?
    .ok()?
    .upstream?;
    timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream))
        .await
        .ok()?
        .ok()
}

/// Watches the switches for what ends an open connection from outside its byte streams: an
/// outage, or the end of a black hole that swallowed some of its bytes.
async fn supervise(control: &mut watch::Receiver<Control>, conn: &Conn, epoch: u64) -> Cut {
    loop {
        let (outage_epoch, blackhole_until) = {
            let current = control.borrow_and_update();
            (current.outage_epoch, current.blackhole_until)
        };
        if outage_epoch != epoch {
            return Cut::Outage;
        }
        if conn.blackholed.load(Ordering::Relaxed) {
            match blackhole_until {
                Some(until) if until > Instant::now() => tokio::select! {
                    () = sleep_until(until) => {}
                    changed = control.changed() => if changed.is_err() { return Cut::Stopped },
                },
                _ => return Cut::BlackholeOver,
            }
            continue;
        }
        tokio::select! {
            () = conn.became_blackholed.notified() => {}
            changed = control.changed() => if changed.is_err() { return Cut::Stopped },
        }
    }
}

/// Reads one side into the delay line, stamping each chunk with when it may be written.
async fn read_side(
    mut from: ReadHalf<'_>,
    line: LineIn,
    shared: &Shared,
    conn: &Conn,
    flow: Flow,
) -> Result<(), Cut> {
    loop {
        let mut buffer = BytesMut::with_capacity(CHUNK_BYTES);
        let read = from
            .read_buf(&mut buffer)
            .await
            .map_err(|_| Cut::PeerFailed)?;
        if flow == Flow::ToClient {
            bump(&shared.counters.bytes_from_upstream, read as u64);
        }
        if read == 0 {
            // The writer is gone only if it failed, which ends the connection anyway.
            let _ = line.items.send(Item::Eof);
            return Ok(());
        }
        let Ok(room) = line
            .room
            .clone()
            .acquire_many_owned(u32::try_from(read).unwrap_or(BYTES_IN_FLIGHT))
            .await
        else {
            return Ok(());
        };
        let latency = shared.control.borrow().latency + conn.extra_latency;
        if line
            .items
            .send(Item::Data(buffer.freeze(), Instant::now() + latency, room))
            .is_err()
        {
            return Ok(());
        }
    }
}

/// The reading end's side of one direction's delay line.
struct LineIn {
    items: mpsc::UnboundedSender<Item>,
    room: Arc<Semaphore>,
}

/// One direction's delay line: chunks in order, at most [`BYTES_IN_FLIGHT`] of them at once.
fn delay_line() -> (LineIn, mpsc::UnboundedReceiver<Item>) {
    let (items, out) = mpsc::unbounded_channel();
    let room = Arc::new(Semaphore::new(BYTES_IN_FLIGHT as usize));
    (LineIn { items, room }, out)
}

/// Writes the delay line to the other side when each chunk is due, unless a black hole
/// swallows it or a planned reset cuts it.
async fn write_side(
    mut to: WriteHalf<'_>,
    mut line: mpsc::UnboundedReceiver<Item>,
    shared: &Shared,
    conn: &Conn,
    flow: Flow,
) -> Result<(), Cut> {
    let forwarded = match flow {
        Flow::ToUpstream => &shared.counters.bytes_to_upstream,
        Flow::ToClient => &shared.counters.bytes_to_client,
    };
    while let Some(item) = line.recv().await {
        let (chunk, due) = match item {
            // The permit goes when the chunk has been written (or swallowed).
            Item::Data(chunk, due, _room) => (chunk, due),
            Item::Eof => {
                let _ = to.shutdown().await;
                return Ok(());
            }
        };
        if due > Instant::now() {
            sleep_until(due).await;
            conn.note_delayed(shared);
        }
        if flow == Flow::ToClient {
            let mut control = shared.control.subscribe();
            while control.borrow_and_update().holding_responses {
                if control.changed().await.is_err() {
                    return Err(Cut::Stopped);
                }
            }
        }
        if shared.control.borrow().blackholed(Instant::now()) {
            conn.note_blackholed(shared);
            continue;
        }
        let len = chunk.len() as u64;
        let budget = conn.budget(shared, flow);
        let sent = budget.map_or(len, |left| left.min(len));
        let usable = usize::try_from(sent).unwrap_or(chunk.len());
        to.write_all(&chunk[..usable])
            .await
            .map_err(|_| Cut::PeerFailed)?;
        bump(forwarded, sent);
        conn.spend(sent);
        if budget.is_some_and(|left| left <= len) {
            let _ = to.flush().await;
            return Err(Cut::Planned);
        }
    }
    Ok(())
}

/// `host:port` of an `http://` URL (port 80 when it has none), as the stack's endpoint
/// variables give them.
pub fn socket_addr_of(url: &str) -> io::Result<SocketAddr> {
    let invalid = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("expected http://IP[:PORT][/...], got {url:?}"),
        )
    };
    let rest = url.strip_prefix("http://").ok_or_else(invalid)?;
    let authority = rest.split('/').next().unwrap_or_default();
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip: IpAddr = authority.parse().map_err(|_| invalid())?;
    Ok(SocketAddr::new(ip, 80))
}
