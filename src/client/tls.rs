//! TLS for the client: whom it trusts (a CA file, or the server certificate's SHA-256
//! fingerprint pinned), and the connection's byte stream, TLS or plain, behind one type.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    CryptoProvider, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::server::tls::{fingerprint, provider};

/// Why a TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("{0} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCert(String),
    #[error("{0} holds a certificate rustls does not take as a trust root: {1}")]
    BadCert(String, rustls::Error),
    #[error(
        "{0:?} is not a SHA-256 fingerprint: expected 64 hex digits, colons allowed \
         (as the server prints it at start)"
    )]
    Fingerprint(String),
    #[error("cannot set up TLS: {0}")]
    Config(rustls::Error),
}

/// Whom a TLS client trusts; cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Trusts the certificates in the PEM file `path` as roots (a self-signed server
    /// certificate is its own root); the server's name must be in its certificate.
    pub fn with_ca_file(path: &Path) -> Result<Self, TlsSetupError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|cause| TlsSetupError::Read {
            path: shown.clone(),
            cause,
        })?;
        let mut roots = RootCertStore::empty();
        let mut any = false;
        for cert in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
            roots
                .add(cert)
                .map_err(|e| TlsSetupError::BadCert(shown.clone(), e))?;
            any = true;
        }
        if !any {
            return Err(TlsSetupError::NoCert(shown));
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsSetupError::Config)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::from_config(config))
    }

    /// Trusts exactly the server certificate whose SHA-256 is `hex` (64 hex digits,
    /// colons and case as they come), whatever names or dates it carries: how a class
    /// pins a self-signed certificate. The handshake's signature is still checked, so
    /// only the holder of that certificate's key passes.
    pub fn with_fingerprint(hex: &str) -> Result<Self, TlsSetupError> {
        let pinned = parse_fingerprint(hex)?;
        let provider = provider();
        let verifier = Arc::new(Pinned {
            fingerprint: pinned,
            provider: Arc::clone(&provider),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsSetupError::Config)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self::from_config(config))
    }

    fn from_config(config: ClientConfig) -> Self {
        ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// The client side of the handshake on `stream`, for the host in `addr` (the
    /// address as the user wrote it: its host is the name the certificate must carry).
    pub async fn connect(
        &self,
        addr: &str,
        stream: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        self.connector
            .connect(server_name(addr)?, stream)
            .await
            .map_err(plainly)
    }
}

/// The handshake's error in words: a pinned fingerprint that does not match says
/// which one the server showed, without rustls's debug wrapping around it; a peer that
/// does not speak TLS is asked about.
fn plainly(e: std::io::Error) -> std::io::Error {
    let said = match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) => {
            other.to_string()
        }
        Some(rustls::Error::InvalidMessage(_)) => {
            format!("{e} (is this the server's TLS port, its --tls-listen?)")
        }
        _ => return e,
    };
    std::io::Error::new(std::io::ErrorKind::InvalidData, said)
}

/// The host part of `addr` (HOST:PORT, [V6]:PORT, or HOST) as a TLS server name.
fn server_name(addr: &str) -> std::io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host:?} is not a host name TLS can check a certificate against"),
        )
    })
}

/// 32 bytes from 64 hex digits, with or without colons.
fn parse_fingerprint(hex: &str) -> Result<[u8; 32], TlsSetupError> {
    let bad = || TlsSetupError::Fingerprint(hex.to_owned());
    let digits: Vec<u8> = hex
        .trim()
        .bytes()
        .filter(|&b| b != b':')
        .map(|b| (b as char).to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let mut out = [0; 32];
    if digits.len() != out.len() * 2 {
        return Err(bad());
    }
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        *byte = pair[0] << 4 | pair[1];
    }
    Ok(out)
}

/// Accepts the one certificate whose SHA-256 is pinned.
#[derive(Debug)]
struct Pinned {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity);
        if digest.as_ref() == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            let seen = fingerprint(end_entity);
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(WrongFingerprint(seen))),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The server showed a certificate other than the pinned one.
#[derive(Debug)]
struct WrongFingerprint(String);

impl fmt::Display for WrongFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's certificate has SHA-256 fingerprint {}, not the one given \
             with --fingerprint",
            self.0
        )
    }
}

impl std::error::Error for WrongFingerprint {}

/// The reading half of a connection, TLS or plain.
pub(super) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection, TLS or plain.
pub(super) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Splits a plain or TLS connection into halves of one type.
pub(super) fn split<S>(stream: S) -> (ReadHalf, WriteHalf)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (read, write) = tokio::io::split(stream);
    (Box::new(read), Box::new(write))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_as_people_paste_them() {
        let colons = (0..32)
            .map(|i| format!("{i:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let plain = colons.replace(':', "").to_lowercase();
        assert_eq!(parse_fingerprint(&colons).unwrap()[31], 31);
        assert_eq!(
            parse_fingerprint(&plain).unwrap(),
            parse_fingerprint(&colons).unwrap()
        );
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint(&format!("{plain}00")).is_err());
        assert!(parse_fingerprint(&plain.replace('a', "g")).is_err());
        assert!(parse_fingerprint("é").is_err());
    }

    #[test]
    fn server_names_from_addresses() {
        assert_eq!(
            server_name("localhost:12000").unwrap().to_str(),
            "localhost"
        );
        assert_eq!(server_name("example.org").unwrap().to_str(), "example.org");
        assert_eq!(server_name("127.0.0.1:1").unwrap().to_str(), "127.0.0.1");
        assert_eq!(server_name("[::1]:12000").unwrap().to_str(), "::1");
    }
}
