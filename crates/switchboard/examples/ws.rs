//! A minimal WebSocket client for trying Switchboard by hand, with nothing to install:
//! sends each line of standard input as a text frame and prints every frame it receives.
//! It waits `LINGER` (default 1 s) after the last line for replies, then closes.
//!
//! ```sh
//! cargo run --release --example ws -- ws://127.0.0.1:3001 <<'EOF'
//! {"type":"auth","userId":"alice","roomId":"r1"}
//! EOF
//! ```

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: ws <ws://host:port/path>  (frames to send on standard input, one per line)")?;
    let linger = std::env::var("LINGER")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_secs_f64);
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    let (mut tx, mut rx) = ws.split();
    let printer = tokio::spawn(async move {
        while let Some(frame) = rx.next().await {
            match frame {
                Ok(Message::Text(t)) => println!("{t}"),
                Ok(Message::Binary(b)) => println!("<{} binary bytes>", b.len()),
                Ok(Message::Close(c)) => {
                    println!("<closed: {c:?}>");
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("<error: {e}>");
                    break;
                }
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if !line.trim().is_empty() {
            tx.send(Message::text(line)).await?;
        }
    }
    tokio::time::sleep(linger).await;
    let _ = tx.send(Message::Close(None)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), printer).await;
    Ok(())
}
