//! Who is on the other end: anonymous members carried in a signed session
//! token (no account database), facilitators and admins carried in a JWT
//! from the operator's identity provider, and room-scoped member ids that
//! only the server can link back to an account.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kindred_protocol::{AccountId, MemberId, Role, RoomId};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Issuer and audience of tokens made by `kindred token` and expected by default.
pub const DEFAULT_ISSUER: &str = "kindred";
pub const DEFAULT_AUDIENCE: &str = "kindred";
/// Audience of member session tokens: distinct, so one can never pass as the other.
const SESSION_AUDIENCE: &str = "kindred-session";
/// How long a member session token stays valid; every `welcome` issues a fresh one.
const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
}

/// Who a connection is, once `hello` succeeded.
#[derive(Debug, Clone)]
pub struct Identity {
    pub account: AccountId,
    pub role: Role,
    /// A facilitator's display name, or the member's remembered handle.
    pub name: Option<String>,
    /// Rooms a facilitator may moderate; `None` means every room.
    pub rooms: Option<Vec<RoomId>>,
    /// When a facilitator token expires (seconds since the epoch).
    pub expires_at: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionClaims {
    sub: String,
    aud: String,
    iat: u64,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handle: Option<String>,
}

/// Claims of a facilitator or admin token.
#[derive(Debug, Serialize, Deserialize)]
pub struct StaffClaims {
    pub sub: String,
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<RoomId>>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Not required: identity providers may leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    pub iss: String,
    pub aud: Audience,
}

/// A JWT `aud`: one string, or an array of them (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl From<&str> for Audience {
    fn from(aud: &str) -> Audience {
        Audience::One(aud.to_owned())
    }
}

impl From<String> for Audience {
    fn from(aud: String) -> Audience {
        Audience::One(aud)
    }
}

/// Why a staff token was refused, in words fit for the person holding it.
fn refusal(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => "its signature does not match".into(),
        K::InvalidAudience => "it was issued for another service (aud)".into(),
        K::InvalidIssuer => "it was issued by an identity provider this server does not trust (iss)".into(),
        K::ImmatureSignature => "it is not valid yet (nbf)".into(),
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "it is signed with an algorithm this server does not accept".into(),
        K::MissingRequiredClaim(claim) => format!("it has no '{claim}' claim"),
        _ => "it is not a token this server can read".into(),
    }
}

/// Signing keys, all derived from one secret so that every node of a cluster
/// that shares the secret agrees on tokens and member ids.
#[derive(Clone)]
pub struct Auth {
    secret: Vec<u8>,
    session_encoding: EncodingKey,
    session_decoding: DecodingKey,
    member_id_key: Vec<u8>,
    issuer: String,
    audience: String,
    /// The one algorithm staff tokens may use, and the key that checks them.
    staff_algorithm: Algorithm,
    staff_key: DecodingKey,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth { .. }")
    }
}

fn derive(secret: &[u8], label: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Auth {
    pub fn new(secret: &[u8], issuer: &str, audience: &str) -> Auth {
        let session_key = derive(secret, "kindred session tokens v1");
        Auth {
            secret: secret.to_vec(),
            session_encoding: EncodingKey::from_secret(&session_key),
            session_decoding: DecodingKey::from_secret(&session_key),
            member_id_key: derive(secret, "kindred member ids v1"),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            staff_algorithm: Algorithm::HS256,
            staff_key: DecodingKey::from_secret(secret),
        }
    }

    /// Check staff tokens with the identity provider's public key instead of
    /// the shared secret. `algorithm` is pinned: a token that names any other
    /// algorithm (`none`, or HS256 signed with this public key) is refused.
    pub fn with_public_key(mut self, algorithm: Algorithm, pem: &[u8]) -> anyhow::Result<Auth> {
        self.staff_key = match algorithm {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem)?,
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem)?,
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem)?,
            other => anyhow::bail!("{other:?} uses a shared secret, not a public key"),
        };
        self.staff_algorithm = algorithm;
        Ok(self)
    }

    /// The secret from the configuration, or the one kept in the data dir
    /// (created with mode 0600 on first start).
    pub fn load_secret(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
        if let Some(secret) = configured {
            anyhow::ensure!(secret.len() >= 32, "KINDRED_JWT_SECRET must be at least 32 bytes");
            return Ok(secret.as_bytes().to_vec());
        }
        let path = data_dir.join("secret");
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().len() >= 32 => return Ok(text.trim().as_bytes().to_vec()),
            Ok(_) => anyhow::bail!("{} is too short; delete it to make a new one", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        std::fs::create_dir_all(data_dir)?;
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = URL_SAFE_NO_PAD.encode(bytes);
        crate::store::write_atomic(&path, secret.as_bytes(), true)?;
        Ok(secret.into_bytes())
    }

    /// A new anonymous account.
    pub fn new_account() -> AccountId {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        AccountId(format!("a_{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The member's session token, carrying its account and the handle it
    /// chose (`None`: generated handles, a different one in each room).
    pub fn session_token(&self, account: &AccountId, handle: Option<&str>) -> String {
        let iat = now_s();
        let claims =
            SessionClaims { sub: account.0.clone(), aud: SESSION_AUDIENCE.into(), iat, exp: iat + SESSION_TTL.as_secs(), handle: handle.map(str::to_owned) };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.session_encoding).expect("HS256 encoding of plain claims cannot fail")
    }

    /// Check a token from `hello`: a member session token or a staff JWT.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let mut session = Validation::new(Algorithm::HS256);
        session.set_audience(&[SESSION_AUDIENCE]);
        session.leeway = 30;
        match jsonwebtoken::decode::<SessionClaims>(token, &self.session_decoding, &session) {
            Ok(data) => {
                return Ok(Identity { account: AccountId(data.claims.sub), role: Role::Member, name: data.claims.handle, rooms: None, expires_at: None });
            }
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                return Err(AuthError::Expired);
            }
            Err(_) => {}
        }
        self.verify_staff(token)
    }

    fn verify_staff(&self, token: &str) -> Result<Identity, AuthError> {
        let mut validation = Validation::new(self.staff_algorithm);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<StaffClaims>(token, &self.staff_key, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            other => AuthError::Invalid(refusal(other)),
        })?;
        let claims = data.claims;
        if !claims.role.is_staff() {
            return Err(AuthError::Invalid("role must be facilitator or admin".into()));
        }
        Ok(Identity {
            account: AccountId(format!("staff:{}", claims.sub)),
            role: claims.role,
            name: Some(claims.name),
            rooms: claims.rooms,
            expires_at: Some(claims.exp),
        })
    }

    /// A facilitator/admin token signed with this server's secret (`kindred token`;
    /// accepted only while staff tokens are checked with HS256 and that secret).
    pub fn staff_token(&self, role: Role, name: &str, rooms: Option<Vec<RoomId>>, ttl: Duration) -> String {
        let iat = now_s();
        let claims = StaffClaims {
            sub: format!("local:{}", name.to_lowercase().replace(' ', "-")),
            name: name.to_owned(),
            role,
            rooms,
            exp: iat + ttl.as_secs(),
            nbf: None,
            iat: Some(iat),
            iss: self.issuer.clone(),
            aud: self.audience.as_str().into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&self.secret))
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// The generated handle of an account that chose none: one per room
    /// (`None`: the one shown outside rooms, in `welcome`), so a member is not
    /// recognisable across rooms by name. Keyed like the member id, so the
    /// handle says nothing of the account to whoever sees it.
    pub fn generated_handle(&self, account: &AccountId, room: Option<&RoomId>) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.member_id_key).expect("HMAC takes a key of any length");
        mac.update(b"handle\0");
        mac.update(account.0.as_bytes());
        if let Some(room) = room {
            mac.update(b"\0");
            mac.update(room.0.as_bytes());
        }
        let digest = mac.finalize().into_bytes();
        let mut seed = [0; 8];
        seed.copy_from_slice(&digest[..8]);
        crate::handles::generate_from(seed)
    }

    /// The account's id inside one room: stable, and unlinkable across rooms
    /// without the server's key.
    pub fn member_id(&self, account: &AccountId, room: &RoomId) -> MemberId {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.member_id_key).expect("HMAC takes a key of any length");
        mac.update(account.0.as_bytes());
        mac.update(b"\0");
        mac.update(room.0.as_bytes());
        let digest = mac.finalize().into_bytes();
        MemberId(format!("m_{}", URL_SAFE_NO_PAD.encode(&digest[..12])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(b"0123456789abcdef0123456789abcdef", DEFAULT_ISSUER, DEFAULT_AUDIENCE)
    }

    #[test]
    fn session_tokens_round_trip_and_member_ids_differ_by_room() {
        let auth = auth();
        let account = Auth::new_account();
        let token = auth.session_token(&account, Some("Quiet Heron 42"));
        let id = auth.verify(&token).unwrap();
        assert_eq!(id.account, account);
        assert_eq!(id.role, Role::Member);
        let grief = auth.member_id(&account, &"grief".into());
        assert_eq!(grief, auth.member_id(&account, &"grief".into()));
        assert_ne!(grief, auth.member_id(&account, &"anxiety".into()));
    }

    #[test]
    fn a_session_token_from_another_secret_is_refused() {
        let other = Auth::new(b"another-secret-another-secret-xx", DEFAULT_ISSUER, DEFAULT_AUDIENCE);
        let token = other.session_token(&Auth::new_account(), Some("x"));
        assert!(auth().verify(&token).is_err());
    }

    #[test]
    fn staff_tokens_carry_role_and_rooms() {
        let auth = auth();
        let token = auth.staff_token(Role::Facilitator, "Sam", Some(vec!["grief".into()]), Duration::from_secs(60));
        let id = auth.verify(&token).unwrap();
        assert_eq!(id.role, Role::Facilitator);
        assert_eq!(id.rooms, Some(vec![RoomId::from("grief")]));
    }
}
