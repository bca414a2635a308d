//! A greeter: joins a room and answers "hello". Reconnects by itself.
//! `cargo run -p kindred-protocol --example bot -- ws://127.0.0.1:8080/ws grief`
use futures_util::StreamExt;
use kindred_protocol::connection::{Client, ClientError, Event, Options};
use kindred_protocol::{ErrorCode, ServerMessage};

pub async fn run(url: &str, room: &str) -> Result<(), ClientError> {
    let (client, mut events) = Client::connect(url, Options::default()).await?;
    // The operator has read the room's ground rules: accept the version asked for.
    if let Err(ClientError::Refused(e)) = client.join(room, None).await {
        if e.code != ErrorCode::RulesNotAccepted {
            return Err(ClientError::Refused(e));
        }
        client.join(room, e.rules_version).await?;
    }
    while let Some(event) = events.next().await {
        let Event::Frame(ServerMessage::Message(m)) = event else { continue };
        if m.text.trim().trim_end_matches('!').eq_ignore_ascii_case("hello") {
            client.reply(room, format!("Hello, {}. Glad you're here.", m.from.handle), m.message_id, None).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:8080/ws".into());
    run(&url, &args.next().unwrap_or_else(|| "grief".into())).await
}
