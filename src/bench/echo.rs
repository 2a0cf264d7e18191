//! The echo target: the least a TCP server can do per round trip, the floor that
//! every other target's `rr` is compared with. The bench runs it as a child process so
//! that its memory can be read apart from the load generator's.

use std::io::Write;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves until killed: every connection gets back what it sends, through an 8 KiB
/// buffer. Prints the bound address on stdout first.
pub async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    writeln!(std::io::stdout(), "{}", listener.local_addr()?)?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// The echo server started as a child of this process, killed when dropped.
pub struct EchoChild {
    pub child: tokio::process::Child,
    pub addr: String,
}

impl EchoChild {
    pub async fn start() -> Result<EchoChild, super::BenchError> {
        use tokio::io::AsyncBufReadExt;
        let fail = |e: std::io::Error| {
            super::BenchError::Connect(format!("cannot start the echo server: {e}"))
        };
        let exe = std::env::current_exe().map_err(fail)?;
        let mut child = tokio::process::Command::new(exe)
            .args(["echo-server", "--listen", "127.0.0.1:0", "--threads", "1"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(fail)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| super::BenchError::Connect("the echo server has no stdout".into()))?;
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .map_err(fail)?;
        Ok(EchoChild {
            child,
            addr: line.trim().to_owned(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
