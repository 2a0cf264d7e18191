//! The TLS flags every native client takes: `--tls`, and whom to trust (`--ca` or
//! `--fingerprint`).

use std::path::PathBuf;

use crate::client::{ClientOptions, ClientTls};

use super::CliError;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Speak TLS: to the server's --tls-listen port, which serves the native protocol
    /// over TLS (for `stats`, to its HTTP listener serving HTTPS); trust the server
    /// with --ca or --fingerprint.
    #[arg(long, requires = "tls_trust")]
    pub tls: bool,
    /// With --tls: PEM file of the certificate(s) to trust, for instance a server's
    /// self-signed DB.tls-cert.pem; the host name given with --addr must be in it.
    #[arg(long, value_name = "FILE", requires = "tls", group = "tls_trust")]
    pub ca: Option<PathBuf>,
    /// With --tls: the SHA-256 fingerprint of the server's certificate, as the server
    /// prints it at start (colons optional); only that certificate is accepted.
    #[arg(long, value_name = "HEX", requires = "tls", group = "tls_trust")]
    pub fingerprint: Option<String>,
}

impl TlsArgs {
    /// Whom to trust, when TLS was asked for.
    pub fn client_tls(&self) -> Result<Option<ClientTls>, CliError> {
        if !self.tls {
            return Ok(None);
        }
        let tls = match (&self.ca, &self.fingerprint) {
            (Some(ca), _) => ClientTls::with_ca_file(ca),
            (None, Some(hex)) => ClientTls::with_fingerprint(hex),
            (None, None) => {
                return Err(CliError::Usage(
                    "--tls needs whom to trust: give --ca FILE or --fingerprint HEX".into(),
                ));
            }
        };
        tls.map(Some).map_err(|e| CliError::Usage(e.to_string()))
    }
}

/// `options`, speaking TLS when `tls` says so.
pub fn with_tls(options: ClientOptions, tls: Option<&ClientTls>) -> ClientOptions {
    match tls {
        Some(tls) => options.tls(tls.clone()),
        None => options,
    }
}
