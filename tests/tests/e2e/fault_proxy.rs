//! The fault proxy itself, against small loopback servers started here, and once in front of
//! a real stack to prove the plumbing (port 80, fake-gcs-server's upload URLs, restarts).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use yuba_e2e::fault_proxy::{Chaos, FaultProxy, ResetDirection};
use yuba_e2e::{Stack, StackOptions, gcs_sha256, pseudo_random_bytes, sha256_hex};
use yuba_gcs::{Gcs, GcsSettings, UploadSpec};
use yuba_startup::Env;

/// A bound on every wait in these tests, so a broken proxy fails a test rather than hangs it.
const LIMIT: Duration = Duration::from_secs(5);

async fn listener() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("binding a loopback port")
}

/// A server that sends `body` on every connection, then closes it.
async fn sender(body: Bytes) -> SocketAddr {
    let listener = listener().await;
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A server that sends back whatever it receives.
async fn echo() -> SocketAddr {
    let listener = listener().await;
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

/// A server that reads each connection to its end and reports how many bytes it got and
/// whether the end was an error.
async fn sink() -> (SocketAddr, mpsc::UnboundedReceiver<(usize, bool)>) {
    let listener = listener().await;
    let addr = listener.local_addr().expect("local address");
    let (report, reports) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let report = report.clone();
            tokio::spawn(async move {
                let (received, error) = read_all(&mut stream).await;
                let _ = report.send((received.len(), error.is_some()));
            });
        }
    });
    (addr, reports)
}

/// Everything a connection yields until its end, and the error that ended it, if any.
async fn read_all(stream: &mut TcpStream) -> (Vec<u8>, Option<io::Error>) {
    let mut received = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        match timeout(LIMIT, stream.read(&mut buffer)).await {
            Err(_) => panic!("the connection neither ended nor sent anything for {LIMIT:?}"),
            Ok(Ok(0)) => return (received, None),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Ok(Err(error)) => return (received, Some(error)),
        }
    }
}

/// A connection that may fail at once: a reset that lands before the client has seen its
/// connect succeed fails the connect.
async fn try_connect(proxy: &FaultProxy) -> io::Result<TcpStream> {
    timeout(LIMIT, TcpStream::connect(proxy.addr()))
        .await
        .expect("connecting in time")
}

async fn connect(proxy: &FaultProxy) -> TcpStream {
    try_connect(proxy).await.expect("connecting to the proxy")
}

/// Sends `message` and reads the echo of it (`None`: nothing came back within `within`).
async fn round_trip(stream: &mut TcpStream, message: &[u8], within: Duration) -> Option<Vec<u8>> {
    stream.write_all(message).await.ok()?;
    let mut echoed = vec![0; message.len()];
    match timeout(within, stream.read_exact(&mut echoed)).await {
        Ok(Ok(_)) => Some(echoed),
        _ => None,
    }
}

/// Whether the other end has gone: a reset, or an end of stream, within `LIMIT`.
async fn ended(stream: &mut TcpStream) -> bool {
    let mut byte = [0; 1];
    matches!(
        timeout(LIMIT, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn is_reset(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
    )
}

#[tokio::test]
async fn forwarding_is_byte_exact_both_ways() {
    let body = Bytes::from(pseudo_random_bytes(3 * 1024 * 1024 + 7, 1));
    let proxy = FaultProxy::listen().await.expect("listening");
    proxy.forward_to(sender(body.clone()).await);
    let mut stream = connect(&proxy).await;
    let (received, error) = read_all(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(sha256_hex(&received), sha256_hex(&body));

    let upload = pseudo_random_bytes(700 * 1024 + 3, 2);
    proxy.forward_to(echo().await);
    let mut stream = connect(&proxy).await;
    let (mut read, mut write) = stream.split();
    let (sent, (echoed, error)) = tokio::join!(
        async {
            write.write_all(&upload).await?;
            write.shutdown().await
        },
        async {
            let mut echoed = Vec::new();
            let result = timeout(LIMIT, read.read_to_end(&mut echoed)).await;
            (echoed, result.expect("the echo ends in time").err())
        }
    );
    sent.expect("sending through the proxy");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(sha256_hex(&echoed), sha256_hex(&upload));

    let stats = proxy.stats();
    assert_eq!(stats.connections, 2);
    assert_eq!(stats.bytes_to_client, (body.len() + upload.len()) as u64);
    assert_eq!(stats.bytes_to_upstream, upload.len() as u64);
    assert_eq!((stats.resets, stats.delayed_connections), (0, 0), "{stats}");
}

#[tokio::test]
async fn connections_that_arrive_before_the_upstream_wait_for_it() {
    let proxy = FaultProxy::listen().await.expect("listening");
    let mut early = connect(&proxy).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.forward_to(echo().await);
    let echoed = round_trip(&mut early, b"hello", LIMIT).await;
    assert_eq!(echoed.as_deref(), Some(&b"hello"[..]));
}

#[tokio::test]
async fn reset_next_cuts_a_download_half_way_then_the_next_connection_is_clean() {
    let body = Bytes::from(pseudo_random_bytes(1024 * 1024, 3));
    let proxy = FaultProxy::listen().await.expect("listening");
    proxy.forward_to(sender(body.clone()).await);
    proxy.reset_next(1, 100_000);

    let mut cut = connect(&proxy).await;
    let (received, error) = read_all(&mut cut).await;
    let error = error.expect("a cut connection ends in an error, not a clean end");
    assert!(is_reset(&error), "a reset, not {error:?}");
    assert!(
        (50_000..=100_000).contains(&received.len()),
        "about 100,000 bytes arrive before the cut, not {}",
        received.len()
    );
    assert_eq!(
        received[..],
        body[..received.len()],
        "the bytes before the cut are intact"
    );

    let mut clean = connect(&proxy).await;
    let (received, error) = read_all(&mut clean).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(received.len(), body.len());
    let stats = proxy.stats();
    assert_eq!((stats.connections, stats.resets), (2, 1), "{stats}");
}

#[tokio::test]
async fn reset_next_toward_upstream_cuts_an_upload_half_way() {
    let (server, mut reports) = sink().await;
    let proxy = FaultProxy::listen().await.expect("listening");
    proxy.forward_to(server);
    proxy.reset_next_toward(ResetDirection::ToUpstream, 1, 200_000);

    let upload = pseudo_random_bytes(2 * 1024 * 1024, 4);
    let mut stream = connect(&proxy).await;
    let sent = timeout(LIMIT, async {
        stream.write_all(&upload).await?;
        stream.shutdown().await
    })
    .await
    .expect("the upload ends in time");
    assert!(
        sent.is_err() || ended(&mut stream).await,
        "the client sees its connection fail"
    );
    let (received, failed) = timeout(LIMIT, reports.recv())
        .await
        .expect("the server reports in time")
        .expect("a report");
    assert!(failed, "the server sees a reset, not a clean end");
    assert!(
        received <= 200_000,
        "at most 200,000 bytes reach the server, not {received}"
    );
    assert_eq!(proxy.stats().resets, 1);
}

#[tokio::test]
async fn latency_delays_each_way() {
    let proxy = FaultProxy::listen().await.expect("listening");
    proxy.forward_to(echo().await);
    let mut stream = connect(&proxy).await;
    assert!(round_trip(&mut stream, b"warm", LIMIT).await.is_some());

    let latency = Duration::from_millis(150);
    proxy.set_latency(latency);
    let started = Instant::now();
    let echoed = round_trip(&mut stream, b"ping", LIMIT).await;
    assert_eq!(echoed.as_deref(), Some(&b"ping"[..]));
    assert!(
        started.elapsed() >= 2 * latency,
        "a round trip through the proxy took {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.stats().delayed_connections, 1);

    proxy.set_latency(Duration::ZERO);
    assert!(round_trip(&mut stream, b"fast", LIMIT).await.is_some());
}

#[tokio::test]
async fn a_black_hole_times_clients_out_then_closes_what_it_swallowed() {
    let proxy = FaultProxy::listen().await.expect("listening");
    proxy.forward_to(echo().await);
    let mut open = connect(&proxy).await;
    assert!(round_trip(&mut open, b"before", LIMIT).await.is_some());
    let mut idle = connect(&proxy).await;

    let window = Duration::from_millis(800);
    let started = Instant::now();
    proxy.blackhole_for(window);
    let short = Duration::from_millis(200);
    assert!(
        round_trip(&mut open, b"during", short).await.is_none(),
        "an open connection hears nothing back"
    );
    let mut new = connect(&proxy).await;
    assert!(
        round_trip(&mut new, b"during", short).await.is_none(),
        "a new connection hears nothing back"
    );

    assert!(ended(&mut open).await, "swallowed connections close");
    assert!(ended(&mut new).await, "swallowed connections close");
    assert!(started.elapsed() >= window, "not before the window ends");
    let mut after = connect(&proxy).await;
    assert!(round_trip(&mut after, b"after", LIMIT).await.is_some());
    assert!(
        round_trip(&mut idle, b"idle", LIMIT).await.is_some(),
        "a connection that sent nothing during the window carries on"
    );
    assert_eq!(proxy.stats().blackholed_connections, 2);
}

#[tokio::test]
async fn an_outage_resets_open_connections_refuses_new_ones_then_recovers() {
    let proxy = FaultProxy::listen().await.expect("listening");
    proxy.forward_to(echo().await);
    let mut open = connect(&proxy).await;
    assert!(round_trip(&mut open, b"before", LIMIT).await.is_some());

    let window = Duration::from_millis(500);
    let started = Instant::now();
    proxy.outage_for(window);
    assert!(ended(&mut open).await, "open connections are reset at once");
    let refused = match try_connect(&proxy).await {
        Ok(mut stream) => round_trip(&mut stream, b"during", LIMIT).await,
        Err(_) => None,
    };
    assert!(refused.is_none(), "new connections fail during the outage");

    tokio::time::sleep_until(started + window).await;
    let mut after = connect(&proxy).await;
    assert!(round_trip(&mut after, b"after", LIMIT).await.is_some());
    let stats = proxy.stats();
    assert_eq!(
        (stats.reset_by_outage, stats.refused_in_outage),
        (1, 1),
        "{stats}"
    );
}

/// Downloads `count` bodies one after another through `proxy`, and says which arrived whole.
async fn downloads(proxy: &FaultProxy, count: usize, len: usize) -> Vec<bool> {
    let mut whole = Vec::new();
    for _ in 0..count {
        let Ok(mut stream) = try_connect(proxy).await else {
            whole.push(false);
            continue;
        };
        let (received, error) = read_all(&mut stream).await;
        whole.push(error.is_none() && received.len() == len);
    }
    whole
}

#[tokio::test]
async fn chaos_from_a_seed_injects_faults_and_counts_them() {
    let len = 64 * 1024;
    let server = sender(Bytes::from(pseudo_random_bytes(len, 5))).await;
    let chaos = Chaos {
        seed: 42,
        reset_probability: 0.4,
        max_reset_after_bytes: 32 * 1024,
        latency_probability: 0.4,
        max_latency: Duration::from_millis(5),
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let proxy = FaultProxy::listen().await.expect("listening");
        proxy.forward_to(server);
        proxy.set_chaos(Some(chaos.clone()));
        let whole = downloads(&proxy, 30, len).await;
        let stats = proxy.stats();
        println!("chaos seed {}: {stats}", chaos.seed);
        let failed = whole.iter().filter(|whole| !**whole).count() as u64;
        assert!(stats.resets > 0 && stats.delayed_connections > 0, "{stats}");
        assert_eq!(stats.resets, failed, "each reset is one failed download");
        runs.push(whole);
    }
    assert_eq!(runs[0], runs[1], "the same seed makes the same faults");

    let proxy = FaultProxy::listen().await.expect("listening");
    proxy.forward_to(server);
    proxy.set_chaos(Some(chaos));
    proxy.set_chaos(None);
    assert!(
        downloads(&proxy, 5, len)
            .await
            .into_iter()
            .all(|whole| whole)
    );
}

#[tokio::test]
async fn dropping_the_proxy_stops_it() {
    let proxy = FaultProxy::listen().await.expect("listening");
    proxy.forward_to(echo().await);
    let addr = proxy.addr();
    let mut open = connect(&proxy).await;
    assert!(round_trip(&mut open, b"hello", LIMIT).await.is_some());

    let clone = proxy.clone();
    drop(proxy);
    assert!(
        round_trip(&mut open, b"still", LIMIT).await.is_some(),
        "a clone keeps it running"
    );
    drop(clone);
    assert!(ended(&mut open).await, "its connections close");
    let deadline = Instant::now() + LIMIT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The harness end to end: the GCS emulator behind its proxy takes a resumable upload whose
/// second request comes back through the proxy, and keeps the object across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_behind_proxies_survives_a_gcs_restart() -> anyhow::Result<()> {
    let options = StackOptions {
        gcs_backend: Some("filesystem"),
        ..StackOptions::default()
    };
    let (stack, proxies) = Stack::start_behind_proxies("fault-proxy", options).await?;
    let overrides = proxies.overrides();
    let endpoint = |name| {
        overrides
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
            .unwrap_or_default()
    };
    // 256 KiB chunks, so that 700 KiB go in a resumable upload of several requests.
    let env = Env::from_pairs([
        ("YUBA_GCS_ENDPOINT", endpoint("YUBA_GCS_ENDPOINT")),
        ("YUBA_GCS_RETRY_SECONDS", "10"),
        ("YUBA_UPLOAD_CHUNK_BYTES", "262144"),
    ]);
    let gcs = Gcs::connect(&GcsSettings::from_env(&env)?).await?;
    let bucket = stack.replica_bucket();
    let content = pseudo_random_bytes(700 * 1024, 6);
    let spec = UploadSpec {
        bucket: bucket.to_owned(),
        name: "through/the proxy.bin".to_owned(),
        metadata: vec![("owner".to_owned(), "ann".to_owned())],
        ..UploadSpec::default()
    };
    let stored = gcs.upload(spec, Bytes::from(content.clone())).await?;
    assert_eq!(stored.size, content.len() as u64);
    let requests = stack.gcs_requests()?;
    assert!(
        requests.iter().any(|r| r.contains("upload_id=")),
        "a resumable upload: {requests:?}"
    );
    let uploaded = proxies.gcs.stats();
    assert!(
        uploaded.bytes_to_upstream >= content.len() as u64,
        "the upload's content went through the proxy: {uploaded}"
    );

    let s3 = stack.s3_at(endpoint("AWS_ENDPOINT_URL")).await;
    s3.head_bucket()
        .bucket(stack.source_bucket())
        .send()
        .await?;
    assert!(proxies.aws.stats().connections > 0);

    stack.restart_gcs()?;
    assert_eq!(
        gcs_sha256(&gcs, bucket, "through/the proxy.bin").await?,
        sha256_hex(&content),
        "the object survives the restart and reads back through the proxy"
    );
    let object = gcs
        .objects()
        .get(bucket, "through/the proxy.bin")
        .await?
        .expect("the object is still there");
    assert_eq!(object.metadata["owner"], "ann");
    assert!(proxies.gcs.stats().bytes_to_client > uploaded.bytes_to_client);
    println!("{}", proxies.report());
    Ok(())
}
