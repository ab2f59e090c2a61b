//! `/tokens`: personal API tokens. A new token is shown once, on the page that answers its
//! creation; afterwards only its name, date and an id derived from its hash are shown.

use askama::Template;
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use serde::Deserialize;

use crate::{
    GatewayError,
    pages::{Chrome, PageError, PageForm, SignedIn, see_other, view},
    state::AppState,
    tokens::{self, TokenInfo},
};

pub struct TokenRow {
    pub id: String,
    pub short_id: String,
    pub name: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
pub struct TokensPage {
    pub chrome: Chrome,
    pub tokens: Vec<TokenRow>,
    /// The token just created: shown this once.
    pub created: Option<String>,
    pub created_name: String,
    /// What the person typed, when it came back with an error.
    pub name: String,
    pub error: Option<String>,
    pub revoked: bool,
    pub public_url: String,
}

async fn render_page(
    app: &AppState,
    signed: &SignedIn,
    status: StatusCode,
    fill: impl FnOnce(&mut TokensPage),
) -> Result<Response, PageError> {
    let listed = tokens::list(&app.topology.tokens, &signed.login.user).await?;
    let mut page = TokensPage {
        chrome: Chrome::for_user(signed),
        tokens: listed.into_iter().rev().map(row).collect(),
        created: None,
        created_name: String::new(),
        name: String::new(),
        error: None,
        revoked: false,
        public_url: app.web.public_url.as_str().trim_end_matches('/').to_owned(),
    };
    fill(&mut page);
    Ok((status, Html(page.render()?)).into_response())
}

fn row(info: TokenInfo) -> TokenRow {
    TokenRow {
        short_id: info.id.chars().take(12).collect(),
        id: info.id,
        name: info.name,
        created: view::when(&info.created_at),
    }
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    revoked: Option<String>,
}

/// `GET /tokens`.
pub async fn page(
    State(app): State<AppState>,
    signed: SignedIn,
    Query(query): Query<PageQuery>,
) -> Result<Response, PageError> {
    let revoked = query.revoked.is_some();
    render_page(&app, &signed, StatusCode::OK, |p| p.revoked = revoked).await
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    csrf: Option<String>,
    name: Option<String>,
}

/// `POST /tokens`: creates a token and shows it, once.
pub async fn create(
    State(app): State<AppState>,
    signed: SignedIn,
    PageForm(form): PageForm<CreateForm>,
) -> Result<Response, PageError> {
    signed.check_csrf(form.csrf.as_deref()).await?;
    let name = form.name.unwrap_or_default().trim().to_owned();
    match tokens::issue(&app.topology.tokens, &signed.login.user, &name).await {
        Ok(token) => {
            render_page(&app, &signed, StatusCode::OK, |p| {
                p.created = Some(token);
                p.created_name = name;
            })
            .await
        }
        Err(GatewayError::Invalid { message, .. }) => {
            render_page(&app, &signed, StatusCode::BAD_REQUEST, |p| {
                p.error = Some(message);
                p.name = name;
            })
            .await
        }
        Err(other) => Err(other.into()),
    }
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    csrf: Option<String>,
    id: Option<String>,
}

/// `POST /tokens/revoke`: revokes one of the user's tokens.
pub async fn revoke(
    State(app): State<AppState>,
    signed: SignedIn,
    PageForm(form): PageForm<RevokeForm>,
) -> Result<Response, PageError> {
    signed.check_csrf(form.csrf.as_deref()).await?;
    let id = form.id.unwrap_or_default();
    let valid = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid || !tokens::revoke_by_id(&app.topology.tokens, &signed.login.user, &id).await? {
        return Err(PageError::NotFound("no such token"));
    }
    // This gateway forgets it at once; the others when their token watch sees the purge.
    app.token_cache.forget(&id);
    Ok(see_other("/tokens?revoked=1"))
}
