//! An echo bot: logs in, joins a room and answers every message of someone else with the
//! same text, until Ctrl-C.
//!
//! ```text
//! cargo run -p chatnode-client --example echo_bot -- \
//!     http://127.0.0.1:8000 bot@example.com 'bot-passphrase' 1
//! ```

use std::future::Future;
use std::time::Duration;

use chatnode_client::{Client, Error, Event, StatusCode};

/// How long the bot waits for a frame before checking whether it should stop.
const POLL: Duration = Duration::from_millis(200);

/// What the bot's reply to `text` is.
pub fn reply_to(text: &str) -> String {
    format!("echo: {text}")
}

/// Runs the bot in `room` until `stop` resolves or the node closes the socket; returns how
/// many messages it answered.
pub async fn run(
    client: &Client,
    email: &str,
    password: &str,
    room: i64,
    stop: impl Future<Output = ()>,
) -> Result<u64, Error> {
    let me = client.login(email, password).await?;
    match client.enter(me.access(), room).await {
        Ok(_) => {}
        // "Chatroom already joined by you": the bot was a member already.
        Err(error) if error.status() == Some(StatusCode::BAD_REQUEST) => {}
        Err(error) => return Err(error),
    }
    let mut socket = client.socket(room, me.access()).await?;
    tokio::pin!(stop);
    let mut answered = 0;
    loop {
        let event = tokio::select! {
            () = &mut stop => break,
            event = socket.recv_within(POLL) => event?,
        };
        let frame = match event {
            None => continue,
            Some(chatnode_client::Incoming::Frame(frame)) => frame,
            // Closed by the node (shutdown, or the bot was removed): the bot is done.
            Some(_) => break,
        };
        if let Event::Message(message) = Event::parse(&frame) {
            if message.event == "message" && message.sender_id != Some(me.user.id) {
                socket.send_message(&reply_to(&message.message)).await?;
                answered += 1;
            }
        }
    }
    let _ = socket.close().await;
    Ok(answered)
}

#[allow(dead_code)] // The bot's entry point; tests include this file and call `run`.
#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, email, password, room] = args.as_slice() else {
        eprintln!("usage: echo_bot <node URL> <email> <password> <room id>");
        std::process::exit(2);
    };
    let Ok(room) = room.parse() else {
        eprintln!("the room id must be a number, not {room:?}");
        std::process::exit(2);
    };
    let client = Client::new(url.as_str());
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let answered = run(&client, email, password, room, stop).await?;
    println!("answered {answered} messages");
    Ok(())
}
