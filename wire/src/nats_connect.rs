//! Connecting to NATS with a URL option that may carry a user and password
//! (`nats://user:password@host:4222`, as the Kubernetes Secrets hold it).
//!
//! async-nats takes credentials only from its [`ConnectOptions`], never from the URL: a URL's
//! user and password are sent as nothing, and the server answers "authorization violation".
//! [`connect`] moves them from the URL into the options (percent-decoded) and connects to the
//! URLs without them, so they are neither ignored nor kept where a log line could show them.

use std::{fmt::Display, future::Future, time::Duration};

use async_nats::{Client, ConnectError, ConnectOptions, ServerAddr};

/// A user and a password.
pub type UserPassword = (String, String);

/// The servers of a URL option, without credentials, and the credentials apart.
pub type Split = (Vec<ServerAddr>, Option<UserPassword>);

/// The servers of `url` (one URL, or a cluster's, comma-separated) without their credentials,
/// and the user and password the first URL that has any names.
pub fn split_credentials(url: &str) -> Result<Split, String> {
    let mut credentials = None;
    let mut servers = Vec::new();
    for each in super::nats::server_urls(url) {
        let addr: ServerAddr = each
            .parse()
            .map_err(|e| format!("not a NATS server URL: {e}"))?;
        let mut inner = addr.into_inner();
        if !inner.username().is_empty() && credentials.is_none() {
            credentials = Some((
                percent_decode(inner.username()),
                percent_decode(inner.password().unwrap_or("")),
            ));
        }
        // Cannot fail for a nats:// URL with a host, which parsing made sure of.
        let _ = inner.set_username("");
        let _ = inner.set_password(None);
        servers
            .push(ServerAddr::from_url(inner).map_err(|e| format!("not a NATS server URL: {e}"))?);
    }
    if servers.is_empty() {
        return Err("no NATS server URL".into());
    }
    Ok((servers, credentials))
}

/// Connects with `options` to the servers of `url`, with the user and password the URL names.
pub async fn connect(url: &str, options: ConnectOptions) -> Result<Client, ConnectError> {
    let (servers, credentials) = split_credentials(url).map_err(|message| {
        ConnectError::with_source(
            async_nats::ConnectErrorKind::ServerParse,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
        )
    })?;
    let options = match credentials {
        Some((user, password)) => options.user_and_password(user, password),
        None => options,
    };
    options.connect(servers).await
}

/// The first wait between two attempts of [`patiently`]; each next one is twice as long.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// The longest wait between two attempts of [`patiently`].
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// Runs `attempt` until it succeeds or `patience` has run out, then returns its last error:
/// for a service starting beside NATS (on Kubernetes, NATS and the services start together, and
/// the job store exists only once a middleware made it). Waits 250 ms after the first failure,
/// twice as long after each next one (at most 5 s), and logs each failure with `what`; with no
/// patience, the first failure is returned.
pub async fn patiently<T, E, F>(
    what: &str,
    patience: Duration,
    mut attempt: impl FnMut() -> F,
) -> Result<T, E>
where
    E: Display,
    F: Future<Output = Result<T, E>>,
{
    let give_up = tokio::time::Instant::now() + patience;
    let mut wait = FIRST_RETRY;
    loop {
        match attempt().await {
            Ok(done) => return Ok(done),
            Err(e) if tokio::time::Instant::now() + wait < give_up => {
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "{what} failed; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LONGEST_RETRY);
            }
            Err(e) => return Err(e),
        }
    }
}

/// `url` as a log line or an error message may show it: every server's password replaced by
/// `***` (a URL that does not parse is not shown at all).
pub fn redacted(url: &str) -> String {
    super::nats::server_urls(url)
        .into_iter()
        .map(|each| match each.parse::<ServerAddr>() {
            Ok(addr) => {
                let mut inner = addr.into_inner();
                if inner.password().is_some() {
                    let _ = inner.set_password(Some("***"));
                }
                inner.to_string()
            }
            Err(_) => "<not a NATS URL>".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn patience_retries_with_growing_waits_until_it_runs_out() {
        let started = tokio::time::Instant::now();
        let mut tries = Vec::new();
        let done: Result<u32, String> = patiently("testing", Duration::from_secs(60), || {
            tries.push(started.elapsed());
            let n = tries.len() as u32;
            async move {
                if n < 4 {
                    Err(format!("try {n}"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(done, Ok(4));
        let ms: Vec<u128> = tries.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 250, 750, 1750]);

        let started = tokio::time::Instant::now();
        let given_up: Result<(), String> =
            patiently("testing", Duration::from_secs(20), || async {
                Err("down".into())
            })
            .await;
        assert_eq!(given_up, Err("down".to_owned()));
        let waited = started.elapsed();
        assert!(
            waited <= Duration::from_secs(20) && waited > Duration::from_secs(14),
            "{waited:?}"
        );

        let mut calls = 0;
        let at_once: Result<(), &str> = patiently("testing", Duration::ZERO, || {
            calls += 1;
            async { Err("down") }
        })
        .await;
        assert_eq!((at_once, calls), (Err("down"), 1));
    }

    #[test]
    fn credentials_move_from_the_url_into_the_options() {
        let (servers, credentials) =
            split_credentials("nats://executor:s%40cret@10.96.0.5:4222").unwrap();
        assert_eq!(
            credentials,
            Some(("executor".to_owned(), "s@cret".to_owned()))
        );
        assert_eq!(servers.len(), 1);
        let url = servers[0].clone().into_inner();
        assert_eq!(url.username(), "");
        assert_eq!(url.password(), None);
        assert_eq!(url.host_str(), Some("10.96.0.5"));
        assert_eq!(url.port(), Some(4222));
    }

    #[test]
    fn a_cluster_url_keeps_every_server_and_the_first_credentials() {
        let (servers, credentials) =
            split_credentials("nats://cola:pw@a:4222, nats://b:4222").unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(credentials, Some(("cola".to_owned(), "pw".to_owned())));
    }

    #[test]
    fn a_redacted_url_shows_no_password() {
        assert_eq!(
            redacted("nats://cola:s%40cret@a:4222,nats://b:4222"),
            "nats://cola:***@a:4222,nats://b:4222"
        );
        assert_eq!(redacted("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert!(!redacted("nats://u:secret@[::1").contains("secret"));
    }

    #[test]
    fn a_url_without_credentials_has_none() {
        let (servers, credentials) = split_credentials("nats://127.0.0.1:4222").unwrap();
        assert_eq!(servers.len(), 1);
        assert_eq!(credentials, None);
        assert!(split_credentials(" , ").is_err());
        assert!(split_credentials("nats://[::1").is_err());
    }
}
