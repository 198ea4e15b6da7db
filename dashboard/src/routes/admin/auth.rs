//! The admin gate: every admin action needs `Authorization: Bearer <key>` with a key holding the
//! `admin` grant, judged from the headers before the body is read. Never a cookie and never
//! HTTP Basic — both are sent by a browser on its own, also on a request another site makes it
//! send; a Bearer header can only be set by the page's own script (a cross-site script would
//! need a CORS preflight this service never grants). So the admin API is CSRF-safe.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use service_kit::http::{Access, Denied};

use crate::error::AdminError;
use crate::state::AppState;

/// Proof that the request carries an admin key.
pub struct AdminKey(());

impl FromRequestParts<AppState> for AdminKey {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AdminError> {
        check(&state.access, &parts.headers)?;
        Ok(AdminKey(()))
    }
}

/// Allows the request if it presents a Bearer key with the `admin` grant.
pub fn check(access: &Access, headers: &HeaderMap) -> Result<(), Denied> {
    if !access.has_keys() {
        return Err(Denied::Forbidden(
            "admin actions are off: no API key is configured (API_KEYS or API_KEYS_FILE with a \
             key granted `admin`)"
                .into(),
        ));
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Denied::Unauthenticated(
            "admin actions need an API key with the admin grant: send `Authorization: Bearer \
             <key>`"
                .into(),
        ));
    };
    let bearer = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
    if !bearer {
        return Err(Denied::Unauthenticated(
            "admin actions take the key as `Authorization: Bearer <key>` only (never Basic)".into(),
        ));
    }
    match access.caller(headers)? {
        Some(grants) if grants.may_admin() => Ok(()),
        Some(_) => Err(Denied::Forbidden(
            "this API key may not administer queues (it lacks the admin grant)".into(),
        )),
        None => Err(Denied::Unauthenticated("no API key".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use base64::Engine;

    const ADMIN: &str = "admin-key-0123456789abcdef";
    const READER: &str = "read-key-0123456789abcdef0";

    fn access() -> Access {
        let keys = format!("{ADMIN} admin;{READER} read");
        let config = crate::Config::from_args(["--api-keys", &keys]).unwrap();
        let listen = "127.0.0.1:1".parse().unwrap();
        config.common.http.access.load(listen).unwrap()
    }

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn only_a_bearer_admin_key_passes() {
        let a = access();
        assert!(check(&a, &with(&format!("Bearer {ADMIN}"))).is_ok());
        assert!(check(&a, &with(&format!("bearer  {ADMIN}"))).is_ok());
        let unauthenticated =
            |h: HeaderMap| matches!(check(&a, &h), Err(Denied::Unauthenticated(_)));
        assert!(unauthenticated(HeaderMap::new()));
        assert!(unauthenticated(with(&format!("Bearer {ADMIN}x"))));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("u:{ADMIN}"));
        assert!(unauthenticated(with(&format!("Basic {basic}"))));
        assert!(unauthenticated(with(ADMIN)));
        assert!(matches!(
            check(&a, &with(&format!("Bearer {READER}"))),
            Err(Denied::Forbidden(_))
        ));
        assert!(matches!(
            check(&Access::open(), &with(&format!("Bearer {ADMIN}"))),
            Err(Denied::Forbidden(_))
        ));
    }
}
