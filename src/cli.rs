//! The `posthorn` command line: `serve` (the default), `migrate`, and the
//! administration of accounts, API keys and sender identities.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{Settings, redact_password};
use crate::domain::accounts::Accounts;
use crate::domain::keys::KeyMode;
use crate::domain::{Scope, Scopes};
use crate::startup::{Application, shutdown_signal};
use crate::storage::Store;

/// Self-hosted transactional email: gRPC, gRPC-Web, REST and MCP on one port.
#[derive(Debug, Parser)]
#[command(name = "posthorn", version, propagate_version = true)]
pub struct Cli {
    /// Path of a posthorn.toml file; POSTHORN_* environment variables override it.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the server (the default when no command is given).
    Serve(ServeArgs),
    /// Applies pending database migrations and exits.
    Migrate,
    /// Creates and lists accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Creates, lists and revokes API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Adds, lists and removes sender identities (domains and addresses).
    #[command(subcommand)]
    Identities(IdentitiesCommand),
}

#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Does not create the default account and key on an empty database.
    #[arg(long)]
    pub no_bootstrap: bool,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Creates an account.
    Create {
        /// The account's name: lowercase letters, digits, '-' and '_'.
        name: String,
    },
    /// Lists accounts.
    List,
    /// Shows or sets an account's own limits (unset ones follow the server's
    /// `rate_limit_per_second`, `rate_limit_burst` and `daily_quota`).
    Limits {
        /// The account's name.
        name: String,
        /// Requests per second each key of the account may make.
        #[arg(long)]
        rate_per_second: Option<f64>,
        /// Requests a key may make at once after being idle.
        #[arg(long)]
        burst: Option<u32>,
        /// Recipients per UTC day; 0 is unlimited.
        #[arg(long)]
        daily_quota: Option<u64>,
        /// Forgets the account's own limits first.
        #[arg(long)]
        reset: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Creates an API key and prints it once.
    Create {
        /// The account the key belongs to.
        #[arg(long)]
        account: String,
        /// A scope the key grants; repeat or separate with commas. `account:admin` grants all.
        #[arg(long = "scope", required = true, value_delimiter = ',', value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Creates a test-mode key: its mail is always captured, never delivered.
        #[arg(long)]
        test: bool,
        /// A name to recognise the key by.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Lists an account's keys (prefixes only; keys are never shown again).
    List {
        /// The account whose keys to list.
        #[arg(long)]
        account: String,
    },
    /// Revokes a key by id or prefix; it stops working at once.
    Revoke {
        /// The account the key belongs to.
        #[arg(long)]
        account: String,
        /// The key's id (key_…) or prefix (ph_live_…).
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdentitiesCommand {
    /// Adds a verified sender identity: a domain (example.com) or an address.
    Add {
        /// The account the identity belongs to.
        #[arg(long)]
        account: String,
        /// The domain or address.
        identity: String,
    },
    /// Lists an account's identities.
    List {
        /// The account whose identities to list.
        #[arg(long)]
        account: String,
    },
    /// Removes an identity.
    Remove {
        /// The account the identity belongs to.
        #[arg(long)]
        account: String,
        /// The domain or address.
        identity: String,
    },
}

fn parse_scope(value: &str) -> Result<Scope, String> {
    value
        .trim()
        .parse()
        .map_err(|e: crate::domain::scope::UnknownScope| e.to_string())
}

/// Parses the command line and runs it; returns the process exit code.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", with_causes(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes joined by `: `, each cause left out when the
/// text before it already ends with it: sea-orm's and sqlx's errors repeat
/// their cause's words in their own.
fn with_causes(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let settings = Settings::load(cli.config.as_deref(), &env)?;
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    let is_serve = matches!(command, Command::Serve(_));
    let _telemetry = crate::telemetry::init(
        if is_serve { &settings.log } else { "warn" },
        settings.log_format,
    )?;

    let store = Store::connect_with_log(
        &settings.database_url,
        settings.database_max_connections,
        settings.sqlite_log_mb,
    )
    .await
    .with_context(|| {
        format!(
            "cannot open the database {} (setting `database_url`)",
            redact_password(&settings.database_url)
        )
    })?;
    store.migrate().await.context("applying migrations")?;
    let accounts = Accounts::new(store.clone());

    match command {
        Command::Serve(args) => serve(settings, store, args).await,
        Command::Migrate => {
            let applied = store.applied_migrations().await?;
            println!(
                "database is up to date: {} migration(s) applied",
                applied.len()
            );
            for name in applied {
                println!("  {name}");
            }
            Ok(())
        }
        Command::Accounts(AccountsCommand::Create { name }) => {
            let account = accounts.create_account(&name).await?;
            println!("created account {} ({})", account.name, account.id);
            Ok(())
        }
        Command::Accounts(AccountsCommand::Limits {
            name,
            rate_per_second,
            burst,
            daily_quota,
            reset,
        }) => {
            let overrides = accounts
                .set_limits(&name, reset, rate_per_second, burst, daily_quota)
                .await?;
            let show = |v: Option<String>| v.unwrap_or_else(|| "server default".to_owned());
            println!("account {name}:");
            println!(
                "  rate_per_second: {}",
                show(overrides.rate_per_second.map(|r| r.to_string()))
            );
            println!(
                "  burst:           {}",
                show(overrides.burst.map(|b| b.to_string()))
            );
            println!(
                "  daily_quota:     {}",
                show(overrides.daily_quota.map(|q| if q == 0 {
                    "unlimited".to_owned()
                } else {
                    q.to_string()
                }))
            );
            Ok(())
        }
        Command::Accounts(AccountsCommand::List) => {
            for account in accounts.list_accounts().await? {
                println!(
                    "{}\t{}\t{}",
                    account.name,
                    account.id,
                    account.created_at.to_rfc3339()
                );
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Create {
            account,
            scopes,
            test,
            name,
        }) => {
            let mode = if test { KeyMode::Test } else { KeyMode::Live };
            let created = accounts
                .create_key(&account, &name, Scopes::new(scopes), mode)
                .await?;
            println!("{}", created.plaintext);
            eprintln!(
                "created key {} for account {account} with scopes {}{}; it is shown only this once",
                created.key.id,
                created.key.scopes.to_stored(),
                if test {
                    " (test mode: mail is captured, never delivered)"
                } else {
                    ""
                },
            );
            Ok(())
        }
        Command::Keys(KeysCommand::List { account }) => {
            println!("ID\tPREFIX\tNAME\tMODE\tSCOPES\tCREATED\tLAST USED\tREVOKED");
            for key in accounts.list_keys(&account).await? {
                let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    key.id,
                    key.prefix,
                    if key.name.is_empty() { "-" } else { &key.name },
                    if key.test_mode { "test" } else { "live" },
                    key.scopes.to_stored(),
                    key.created_at.to_rfc3339(),
                    time(key.last_used_at),
                    time(key.revoked_at),
                );
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Revoke { account, key }) => {
            accounts.revoke_key(&account, &key).await?;
            println!("revoked {key}");
            Ok(())
        }
        Command::Identities(IdentitiesCommand::Add { account, identity }) => {
            // Until DNS verification exists, identities added by an operator are trusted.
            let identity = accounts.add_identity(&account, &identity, true).await?;
            println!(
                "added verified {} identity {}",
                identity.kind.as_str(),
                identity.value
            );
            Ok(())
        }
        Command::Identities(IdentitiesCommand::List { account }) => {
            for identity in accounts.list_identities(&account).await? {
                println!(
                    "{}\t{}\t{}",
                    identity.value,
                    identity.kind.as_str(),
                    if identity.verified {
                        "verified"
                    } else {
                        "unverified"
                    }
                );
            }
            Ok(())
        }
        Command::Identities(IdentitiesCommand::Remove { account, identity }) => {
            accounts.remove_identity(&account, &identity).await?;
            println!("removed {identity}");
            Ok(())
        }
    }
}

async fn serve(settings: Settings, store: Store, args: ServeArgs) -> anyhow::Result<()> {
    // Before the banner: whoever reads it may signal at once.
    let shutdown = shutdown_signal();
    let bootstrap = if settings.bootstrap && !args.no_bootstrap {
        Accounts::new(store.clone()).bootstrap().await?
    } else {
        None
    };
    let app = Application::build(&settings, store.clone()).await?;
    let addr = app.local_addr();
    println!(
        "posthorn {} listening on http://{addr} (gRPC, gRPC-Web, REST/JSON, MCP at /mcp; OpenAPI at /openapi.json, health at /healthz, readiness at /readyz)",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(public) = app.public_addr() {
        println!("links in delivered mail (unsubscribe) also on http://{public}");
    }
    println!(
        "database: {} ({})",
        store.backend_name(),
        redact_password(&settings.database_url)
    );
    println!("transport: {}", describe_transport(&settings.transport));
    if let Some(key) = bootstrap {
        println!();
        println!(
            "First run: created account \"default\" with the verified sender identity \"localhost\"."
        );
        println!("Its API key, with every scope, is shown only this once:");
        println!();
        println!("    {}", key.plaintext);
        println!();
        println!(
            "Use it in an `authorization: Bearer <key>` or `x-api-key: <key>` header, for example:"
        );
        println!("    grpcurl -plaintext {addr} list");
        println!(
            "    grpcurl -plaintext -H 'authorization: Bearer {}' -d '{{\"from_email\":\"hello@localhost\",\"to\":[\"you@example.com\"],\"subject\":\"Hello\",\"text\":\"My first Posthorn mail\"}}' {addr} posthorn.v1.SendService/SendEmail",
            key.plaintext
        );
        println!(
            "    curl -H 'x-api-key: {}' 'http://{addr}/v1/suppressions?page_size=10'",
            key.plaintext
        );
        println!("or paste it into the browser console at http://{addr}/console");
        println!();
    }
    app.run_until(shutdown).await
}

fn describe_transport(transport: &str) -> String {
    if transport.starts_with("capture://") {
        "capture:// (nothing leaves this machine: messages are stored and readable through the API)"
            .to_owned()
    } else {
        redact_password(transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn an_error_is_printed_with_each_cause_once() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "Connection Error: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = anyhow::Error::new(Wrapper(refused)).context("cannot open the database");
        assert_eq!(
            with_causes(&error),
            "cannot open the database: Connection Error: refused"
        );
        // A cause that says something new is kept.
        let error = anyhow::anyhow!("disk full").context("applying migrations");
        assert_eq!(with_causes(&error), "applying migrations: disk full");
    }
}
