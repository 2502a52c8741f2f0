//! HTTPS for the review station: rustls (with the aws-lc-rs provider reqwest already uses)
//! behind axum's own server, through a [`axum::serve::Listener`] whose connections are TLS
//! streams. Handshakes run in tasks of their own with a deadline, so a client that never
//! finishes one holds up nobody.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::config::TlsFiles;

/// The longest a TLS handshake may take.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// The acceptor for `files` (PEM certificate chain and private key); an error names the key
/// and the file.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read the certificate {} (review_station.tls_cert): {e}",
                files.cert.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "{} holds no PEM certificate (review_station.tls_cert)",
            files.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the private key {} (review_station.tls_key): {e}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "the certificate {} and the key {} do not make a TLS server (review_station.tls_cert, tls_key): {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// TLS connections accepted on a TCP listener, for `axum::serve`.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` until `stop`, each handshake in a task of its own.
    pub fn new(
        tcp: TcpListener,
        acceptor: TlsAcceptor,
        stop: CancellationToken,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = tcp.accept() => accepted,
                };
                let Ok((stream, peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let shaken =
                        tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream)).await;
                    if let Ok(Ok(tls)) = shaken {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ended (stop): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
