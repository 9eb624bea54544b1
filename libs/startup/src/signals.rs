use tokio_util::sync::CancellationToken;

/// A token cancelled when the process is asked to stop: SIGTERM (ECS stopping a task, Lambda
/// shutting an environment down) or SIGINT (Ctrl-C).
pub fn cancel_on_termination() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received; draining"),
            _ = interrupt.recv() => tracing::info!("SIGINT received; draining"),
        }
        cancel.cancel();
    });
    Ok(token)
}
