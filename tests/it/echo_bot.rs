//! The client crate's example bot, run against a real node: it logs in, joins a room and
//! answers what a person writes there.

#[path = "../../client/examples/echo_bot.rs"]
mod bot;

use chatnode_client::Client;

use crate::helpers::{spawn, PASSWORD};

#[tokio::test]
async fn the_echo_bot_joins_a_room_and_answers_each_message() {
    let node = spawn().await;
    let alice = node.register("alice").await;
    let robot = node.register("robot").await;
    let room = node.create_room(&alice, "with a bot", &[]).await;
    let mut socket = node.ws(room, &alice).await;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = Client::new(node.api.base_url());
    let email = robot.email.clone();
    let running = tokio::spawn(async move {
        let stop = async {
            let _ = stopped.await;
        };
        bot::run(&client, &email, PASSWORD, room, stop).await
    });
    // The bot's join notice, then its socket.
    let joined = socket.next_data().await;
    assert_eq!(joined["event"], "member_joined", "{joined}");
    node.wait_for_sockets(2).await;

    for text in ["hello", "how are you?"] {
        node.send_message(&alice, room, text).await;
        assert_eq!(socket.next_data().await["message"], text);
        let answer = socket.next_data().await;
        assert_eq!(answer["sender_id"], robot.id, "{answer}");
        assert_eq!(answer["message"], bot::reply_to(text));
    }
    stop.send(()).unwrap();
    let answered = running.await.unwrap().expect("the bot ran without error");
    assert_eq!(answered, 2, "it answered people, never itself");
    node.wait_for_sockets(1).await;
}
