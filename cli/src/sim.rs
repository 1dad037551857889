//! `vigil sim …`: the carrier simulator's phones (read an inbox, reply).

use std::process::ExitCode;

use clap::Subcommand;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::output::emit;
use crate::{Global, http};

#[derive(Subcommand)]
pub enum SimCommand {
    /// List the messages a simulated phone received, oldest first.
    Inbox {
        /// Phone number, E.164 (e.g. +15550100001).
        number: String,
    },
    /// Send an SMS from a simulated phone (to Vigil's inbound-SMS webhook).
    Reply {
        /// The replying phone's number, E.164.
        number: String,
        body: String,
        /// Recipient; defaults to the sender of the phone's latest message.
        #[arg(long)]
        to: Option<String>,
    },
}

/// One message in a simulated phone's inbox (`GET /sim/inbox/{number}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxEntry {
    pub sid: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub status: String,
    pub num_segments: u32,
    pub received_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReplyResponse {
    message_sid: String,
    webhook_status: u16,
}

pub async fn run(global: &Global, command: SimCommand) -> anyhow::Result<ExitCode> {
    let client = http::client()?;
    match command {
        SimCommand::Inbox { number } => {
            let messages = inbox(&client, &global.sim_url, &number).await?;
            emit(global, &json!(messages), || inbox_text(&number, &messages));
        }
        SimCommand::Reply { number, body, to } => {
            let url = http::url(&global.sim_url, &["sim", "phones", &number, "reply"])?;
            let mut request = json!({ "body": body });
            if let Some(to) = to {
                request["to"] = json!(to);
            }
            let reply: ReplyResponse = http::send("simulator reply", client.post(url).json(&request)).await?;
            emit(global, &json!(reply), || {
                format!(
                    "sent {} from {number}; Vigil's webhook answered HTTP {}\n",
                    reply.message_sid, reply.webhook_status
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn inbox(client: &reqwest::Client, sim_url: &str, number: &str) -> anyhow::Result<Vec<InboxEntry>> {
    let url = http::url(sim_url, &["sim", "inbox", number])?;
    http::send("simulator inbox", client.get(url)).await
}

fn inbox_text(number: &str, messages: &[InboxEntry]) -> String {
    if messages.is_empty() {
        return format!("no messages for {number}\n");
    }
    let mut text = format!("{} message(s) for {number}:\n", messages.len());
    for m in messages {
        text.push_str(&format!(
            "  {}  from {}  [{}]  {}\n    {}\n",
            m.received_at, m.from, m.status, m.sid, m.body
        ));
    }
    text
}
