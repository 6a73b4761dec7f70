//! The TLS client of outbound Postgres and MQTT connections: rustls with
//! ring, trusting the system's certificate store as Spin's native-tls does on
//! Linux (`SSL_CERT_FILE` and `SSL_CERT_DIR` honoured), plus the certificates
//! of `--tls-ca-file` (a private CA, a test's own). Certificates are verified
//! in full, chain and host name, whatever the connection string asks.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// One application's TLS client configuration, built on first use (loading
/// the system's roots takes milliseconds that a host without TLS need not pay).
#[derive(Debug, Default)]
pub struct TlsClient {
    extra: Vec<CertificateDer<'static>>,
    config: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl TlsClient {
    /// Trusting the system's roots and the PEM certificates in `ca_file`,
    /// which is read now: a missing or empty file fails the start.
    pub fn new(ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let extra = match ca_file {
            None => Vec::new(),
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .with_context(|| format!("--tls-ca-file {}", path.display()))?;
                anyhow::ensure!(
                    !certs.is_empty(),
                    "--tls-ca-file {}: no certificate in it",
                    path.display()
                );
                certs
            }
        };
        Ok(Self {
            extra,
            config: OnceLock::new(),
        })
    }

    /// The client configuration, or why there is none (no usable root).
    pub fn config(&self) -> Result<Arc<ClientConfig>, String> {
        self.config.get_or_init(|| self.build()).clone()
    }

    fn build(&self) -> Result<Arc<ClientConfig>, String> {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!("TLS roots: {error}");
        }
        let mut roots = rustls::RootCertStore::empty();
        let (system, unusable) = roots.add_parsable_certificates(found.certs);
        let (extra, bad) = roots.add_parsable_certificates(self.extra.iter().cloned());
        tracing::debug!(system, extra, unusable = unusable + bad, "TLS roots loaded");
        if roots.is_empty() {
            return Err("no trusted TLS root certificates on this machine".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        assert!(TlsClient::new(None).is_ok());
        let missing = TlsClient::new(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(format!("{missing:#}").contains("--tls-ca-file /nonexistent/ca.pem"));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let refused = TlsClient::new(Some(&empty)).unwrap_err();
        assert!(refused.to_string().contains("no certificate"), "{refused}");
    }
}
