//! `vigil users …`: bringing a provider's users in from a directory.

use std::process::ExitCode;

use clap::Subcommand;
use vigil_proto::v1::{ImportLdapRequest, LdapAttributes};

use crate::{
    Global,
    gateway::{Admin, rpc_error},
    manage::import_report,
};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Import users from LDAP / Active Directory (paged search); running it again changes nothing
    /// that did not change in the directory. Prints the same per-row report as `manage import-users`.
    ImportLdap {
        /// Provider id (`prv_…`).
        #[arg(long)]
        provider: String,
        /// Directory URL: `ldap://dc1.corp.example.com` or `ldaps://dc1.corp.example.com:636`.
        #[arg(long)]
        url: String,
        /// DN to bind as, e.g. `CN=vigil-reader,OU=Service,DC=corp,DC=example,DC=com`; leave out to search anonymously.
        #[arg(long)]
        bind_dn: Option<String>,
        /// Its password; used for this import only, never stored.
        #[arg(long, env = "VIGIL_LDAP_BIND_PASSWORD", hide_env_values = true)]
        bind_password: Option<String>,
        /// Where to search, e.g. `OU=Staff,DC=corp,DC=example,DC=com`.
        #[arg(long)]
        base_dn: String,
        /// LDAP filter; default: Active Directory's users, `(&(objectCategory=person)(objectClass=user))`.
        #[arg(long)]
        filter: Option<String>,
        /// Attribute holding the username [default: sAMAccountName; OpenLDAP: uid].
        #[arg(long)]
        username_attribute: Option<String>,
        /// Attribute holding the display name [default: displayName].
        #[arg(long)]
        display_name_attribute: Option<String>,
        /// Attribute holding the phone; repeat for fallbacks [default: mobile, then telephoneNumber].
        #[arg(long = "phone-attribute")]
        phone_attributes: Vec<String>,
        /// Attribute holding the email address [default: mail].
        #[arg(long)]
        email_attribute: Option<String>,
    },
}

pub async fn run(global: &Global, command: UsersCommand) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(global).await?;
    match command {
        UsersCommand::ImportLdap {
            provider,
            url,
            bind_dn,
            bind_password,
            base_dn,
            filter,
            username_attribute,
            display_name_attribute,
            phone_attributes,
            email_attribute,
        } => {
            let request = ImportLdapRequest {
                provider_id: provider,
                url,
                bind_dn: bind_dn.unwrap_or_default(),
                bind_password: bind_password.unwrap_or_default(),
                base_dn,
                filter: filter.unwrap_or_default(),
                attributes: Some(LdapAttributes {
                    username: username_attribute.unwrap_or_default(),
                    display_name: display_name_attribute.unwrap_or_default(),
                    phone: phone_attributes,
                    email: email_attribute.unwrap_or_default(),
                }),
            };
            let report = admin
                .client
                .clone()
                .import_ldap(admin.request(request)?)
                .await
                .map_err(rpc_error("ImportLdap"))?
                .into_inner();
            import_report(global, &report);
        }
    }
    Ok(ExitCode::SUCCESS)
}
