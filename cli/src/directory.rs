//! `vigil providers directory`: where a provider's users' passwords are
//! checked (RADIUS clients in password-code mode bind to it as the user).

use clap::Args;
use serde_json::{Value, json};
use vigil_proto::v1::{Directory, GetDirectoryRequest, SetDirectoryRequest};

use crate::{
    Global,
    gateway::{Admin, rpc_error},
    output::{self, emit, fields},
};

/// Without options, shows the settings.
#[derive(Args)]
pub struct DirectoryArgs {
    /// Provider id (`prv_…`).
    provider: String,
    /// `ldap://dc1.corp.example.com` or `ldaps://dc1.corp.example.com:636`.
    #[arg(long)]
    url: Option<String>,
    /// Bind as the user by this template: `{username}@corp.example.com`,
    /// `uid={username},ou=people,dc=example,dc=org`.
    #[arg(long, conflicts_with = "search_bind_dn")]
    bind_dn_template: Option<String>,
    /// Or find the user first, binding as this service account ...
    #[arg(long, requires = "search_base_dn")]
    search_bind_dn: Option<String>,
    /// ... with this password (stored encrypted, never shown) ...
    #[arg(long, env = "VIGIL_LDAP_BIND_PASSWORD", hide_env_values = true)]
    search_bind_password: Option<String>,
    /// ... searching under this DN ...
    #[arg(long)]
    search_base_dn: Option<String>,
    /// ... for this attribute [default: sAMAccountName].
    #[arg(long)]
    username_attribute: Option<String>,
    /// Remove the settings (password-code logins are then rejected).
    #[arg(long, conflicts_with_all = ["url", "bind_dn_template", "search_bind_dn"])]
    clear: bool,
}

fn directory_json(d: &Directory) -> Value {
    json!({
        "provider_id": d.provider_id, "configured": d.configured, "url": d.url,
        "bind_dn_template": d.bind_dn_template, "search_bind_dn": d.search_bind_dn,
        "search_base_dn": d.search_base_dn, "username_attribute": d.username_attribute,
        "updated_at": output::time(d.updated_at.as_ref()),
    })
}

fn directory_text(d: &Directory) -> String {
    if !d.configured {
        return format!("provider {}: no directory configured\n", d.provider_id);
    }
    format!(
        "provider {} checks passwords at\n{}",
        d.provider_id,
        fields(&[
            ("url", d.url.clone()),
            ("bind DN template", d.bind_dn_template.clone()),
            ("search as", d.search_bind_dn.clone()),
            ("search under", d.search_base_dn.clone()),
            ("username attribute", d.username_attribute.clone()),
            ("updated at", output::time(d.updated_at.as_ref()).unwrap_or_default()),
        ])
    )
}

pub async fn run(global: &Global, admin: &Admin, args: DirectoryArgs) -> anyhow::Result<()> {
    let mut client = admin.client.clone();
    let directory = if args.url.is_none() && !args.clear {
        client
            .get_directory(admin.request(GetDirectoryRequest {
                provider_id: args.provider,
            })?)
            .await
            .map_err(rpc_error("GetDirectory"))?
    } else {
        client
            .set_directory(admin.request(SetDirectoryRequest {
                provider_id: args.provider,
                url: args.url.unwrap_or_default(),
                bind_dn_template: args.bind_dn_template.unwrap_or_default(),
                search_bind_dn: args.search_bind_dn.unwrap_or_default(),
                search_bind_password: args.search_bind_password.unwrap_or_default(),
                search_base_dn: args.search_base_dn.unwrap_or_default(),
                username_attribute: args.username_attribute.unwrap_or_default(),
            })?)
            .await
            .map_err(rpc_error("SetDirectory"))?
    }
    .into_inner();
    emit(global, &directory_json(&directory), || directory_text(&directory));
    Ok(())
}
