//! Requests to the gateway's JSON API with the caller's token, and what a refusal means for
//! the exit code ([`ApiError`]).

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{config::Target, exit};

/// A request that did not get the answer asked for.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The gateway answered with an error status; `message` is its explanation.
    #[error("the gateway answered {status}: {message}")]
    Answered { status: StatusCode, message: String },
    /// The gateway could not be reached, or its answer could not be read.
    #[error("cannot reach the gateway at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not what the API promises.
    #[error("the gateway's answer is not valid JSON: {0}")]
    Unreadable(#[source] serde_json::Error),
}

impl ApiError {
    /// The exit code this failure ends the command with (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Answered { status, .. } => match *status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => exit::NOT_AUTHORIZED,
                StatusCode::NOT_FOUND => exit::NOT_FOUND,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => exit::TRY_LATER,
                s if s.is_client_error() => exit::REFUSED,
                _ => exit::UNAVAILABLE,
            },
            Self::Unreachable { .. } | Self::Unreadable(_) => exit::UNAVAILABLE,
        }
    }
}

/// The API of one gateway, as one caller.
pub struct Api {
    http: reqwest::Client,
    target: Target,
}

impl Api {
    pub fn new(target: Target) -> Self {
        Self {
            http: reqwest::Client::new(),
            target,
        }
    }

    /// `GET path` (under the gateway's URL), its JSON answer.
    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.json(Method::GET, path, None).await
    }

    /// `POST path` with `body` (JSON, if any), its JSON answer.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, ApiError> {
        self.json(Method::POST, path, body).await
    }

    /// `GET path` as a stream of bytes (a zip), once the gateway said yes.
    pub async fn download(&self, path: &str) -> Result<reqwest::Response, ApiError> {
        self.send(Method::GET, path, None).await
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let response = self.send(method, path, body).await?;
        let bytes = response.bytes().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&bytes).map_err(ApiError::Unreadable)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, ApiError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.target.url))
            .bearer_auth(&self.target.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(ApiError::Answered {
            status,
            message: explanation(&text),
        })
    }

    fn unreachable(&self, source: reqwest::Error) -> ApiError {
        ApiError::Unreachable {
            url: self.target.url.clone(),
            source,
        }
    }
}

/// The gateway's error body (`{"error": …, "field": …}`) as one line, or the text as it came.
fn explanation(text: &str) -> String {
    let parsed = serde_json::from_str::<Value>(text).ok();
    let error = parsed.as_ref().and_then(|v| v["error"].as_str());
    match (error, parsed.as_ref().and_then(|v| v["field"].as_str())) {
        (Some(error), Some(field)) => format!("{error} ({field})"),
        (Some(error), None) => error.to_owned(),
        _ => text.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> u8 {
        ApiError::Answered {
            status: StatusCode::from_u16(status).unwrap(),
            message: String::new(),
        }
        .exit_code()
    }

    #[test]
    fn each_refusal_has_its_exit_code() {
        assert_eq!(answered(400), exit::REFUSED);
        assert_eq!(answered(409), exit::REFUSED);
        assert_eq!(answered(413), exit::REFUSED);
        assert_eq!(answered(401), exit::NOT_AUTHORIZED);
        assert_eq!(answered(404), exit::NOT_FOUND);
        assert_eq!(answered(429), exit::TRY_LATER);
        assert_eq!(answered(503), exit::TRY_LATER);
        assert_eq!(answered(500), exit::UNAVAILABLE);
        assert_eq!(answered(502), exit::UNAVAILABLE);
    }

    #[test]
    fn the_error_body_is_read_into_one_line() {
        assert_eq!(
            explanation(r#"{"error":"limit must be a whole number","field":"limit"}"#),
            "limit must be a whole number (limit)"
        );
        assert_eq!(
            explanation(r#"{"error":"no such job","field":null}"#),
            "no such job"
        );
        assert_eq!(explanation("Bad Gateway\n"), "Bad Gateway");
    }
}
