//! Who may call what: roles `viewer` < `trader` < `admin`.
//!
//! Credentials are an API key or an HS256 JWT, sent as
//! `Authorization: Bearer <credential>` (or an API key as `x-api-key`).
//! API keys are configured as `role:sha256-hex` entries (a secret variable):
//! the key itself is never stored, only its SHA-256. A JWT carries `sub`,
//! `role` and `exp` and is signed with the secret variable's key; the mesh
//! (Istio's `RequestAuthentication`) checks the same tokens at the edge.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Trader,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Self::Viewer),
            "trader" => Some(Self::Trader),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Trader => "trader",
            Self::Admin => "admin",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The JWT's `sub`, or `key:<first 8 hex digits of the key's hash>`.
    pub subject: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Invalid(String),
    Forbidden { need: Role, have: Role },
    Misconfigured(String),
}

impl std::error::Error for AuthError {}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => write!(
                f,
                "credentials required: `Authorization: Bearer <API key or JWT>`"
            ),
            Self::Invalid(why) => write!(f, "invalid credentials: {why}"),
            Self::Forbidden { need, have } => write!(
                f,
                "the {} role is needed; these credentials are {}",
                need.as_str(),
                have.as_str()
            ),
            Self::Misconfigured(why) => write!(f, "authentication is misconfigured: {why}"),
        }
    }
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "unauthenticated",
            Self::Invalid(_) => "invalid-credentials",
            Self::Forbidden { .. } => "forbidden",
            Self::Misconfigured(_) => "auth-misconfigured",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Missing | Self::Invalid(_) => 401,
            Self::Forbidden { .. } => 403,
            Self::Misconfigured(_) => 500,
        }
    }
}

/// SHA-256 of an API key, lowercase hex: what the key list stores.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Equal without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
}

/// The configured credentials.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    keys: Vec<(Role, [u8; 32])>,
    jwt_secret: Option<Vec<u8>>,
}

impl Authenticator {
    /// `api_keys`: comma-separated `role:sha256-hex`; `jwt_secret`: the HS256
    /// key (empty: JWTs are not accepted). Both empty: nobody is authorised.
    pub fn from_config(api_keys: &str, jwt_secret: &str) -> Result<Self, AuthError> {
        let mut keys = Vec::new();
        for entry in api_keys.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (role, hash) = entry.split_once(':').ok_or_else(|| {
                AuthError::Misconfigured(format!("`{entry}` is not `role:sha256-hex`"))
            })?;
            let role = Role::parse(role.trim())
                .ok_or_else(|| AuthError::Misconfigured(format!("unknown role `{role}`")))?;
            let hash = unhex(hash.trim()).ok_or_else(|| {
                AuthError::Misconfigured(format!("`{entry}`: the hash is 64 hex digits"))
            })?;
            keys.push((role, hash));
        }
        let jwt_secret = (!jwt_secret.is_empty()).then(|| jwt_secret.as_bytes().to_vec());
        Ok(Self { keys, jwt_secret })
    }

    /// Who `credential` is (`now`: Unix seconds, for a JWT's `exp`).
    pub fn authenticate(&self, credential: Option<&str>, now: i64) -> Result<Principal, AuthError> {
        let credential = credential
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or(AuthError::Missing)?;
        if credential.split('.').count() == 3 {
            return self.verify_jwt(credential, now);
        }
        let digest = Sha256::digest(credential.as_bytes());
        self.keys
            .iter()
            .find(|(_, hash)| constant_time_eq(hash, &digest))
            .map(|(role, hash)| Principal {
                subject: format!(
                    "key:{}",
                    hash[..4]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ),
                role: *role,
            })
            .ok_or_else(|| AuthError::Invalid("unknown API key".into()))
    }

    /// [`authenticate`](Self::authenticate), then require at least `need`.
    pub fn authorize(
        &self,
        credential: Option<&str>,
        need: Role,
        now: i64,
    ) -> Result<Principal, AuthError> {
        let principal = self.authenticate(credential, now)?;
        if principal.role < need {
            return Err(AuthError::Forbidden {
                need,
                have: principal.role,
            });
        }
        Ok(principal)
    }

    fn verify_jwt(&self, token: &str, now: i64) -> Result<Principal, AuthError> {
        let secret = self
            .jwt_secret
            .as_ref()
            .ok_or_else(|| AuthError::Invalid("JWTs are not accepted here".into()))?;
        let invalid = |why: &str| AuthError::Invalid(why.to_string());
        let (signed, signature) = token.rsplit_once('.').ok_or_else(|| invalid("malformed"))?;
        let (header, payload) = signed.split_once('.').ok_or_else(|| invalid("malformed"))?;
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| invalid("unreadable header"))?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(invalid("only HS256 is accepted"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| invalid("unreadable signature"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|_| AuthError::Misconfigured("unusable JWT secret".into()))?;
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| invalid("bad signature"))?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or_else(|| invalid("claims need sub, role and exp"))?;
        if claims.exp <= now {
            return Err(invalid("expired"));
        }
        if claims.nbf.is_some_and(|nbf| nbf > now) {
            return Err(invalid("not valid yet"));
        }
        let role = Role::parse(&claims.role).ok_or_else(|| invalid("unknown role"))?;
        Ok(Principal {
            subject: claims.sub,
            role,
        })
    }
}

/// Sign an HS256 JWT (tests and tooling: `sub`, `role`, `exp`).
pub fn sign_jwt(secret: &[u8], sub: &str, role: Role, exp: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({ "sub": sub, "role": role.as_str(), "exp": exp });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(signed.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn auth() -> Authenticator {
        let keys = format!(
            "viewer:{}, trader:{},admin:{}",
            hash_key("v-key"),
            hash_key("t-key"),
            hash_key("a-key")
        );
        Authenticator::from_config(&keys, "jwt-secret").unwrap()
    }

    #[test]
    fn api_keys_by_role_case_table() {
        let a = auth();
        let cases: Vec<(Option<&str>, Role, Result<Role, &str>)> = vec![
            (None, Role::Viewer, Err("unauthenticated")),
            (Some("  "), Role::Viewer, Err("unauthenticated")),
            (Some("nope"), Role::Viewer, Err("invalid-credentials")),
            (Some("v-key"), Role::Viewer, Ok(Role::Viewer)),
            (Some("v-key"), Role::Trader, Err("forbidden")),
            (Some("t-key"), Role::Trader, Ok(Role::Trader)),
            (Some("t-key"), Role::Admin, Err("forbidden")),
            (Some("a-key"), Role::Admin, Ok(Role::Admin)),
            (Some("a-key"), Role::Viewer, Ok(Role::Admin)),
        ];
        for (credential, need, expected) in cases {
            let got = a
                .authorize(credential, need, NOW)
                .map(|p| p.role)
                .map_err(|e| e.code());
            assert_eq!(got, expected, "{credential:?} needing {need:?}");
        }
    }

    #[test]
    fn jwts_are_checked_for_signature_expiry_and_role() {
        let a = auth();
        let good = sign_jwt(b"jwt-secret", "alice", Role::Trader, NOW + 60);
        let p = a.authorize(Some(&good), Role::Trader, NOW).unwrap();
        assert_eq!((p.subject.as_str(), p.role), ("alice", Role::Trader));
        assert_eq!(
            a.authorize(Some(&good), Role::Admin, NOW)
                .unwrap_err()
                .code(),
            "forbidden"
        );
        let expired = sign_jwt(b"jwt-secret", "alice", Role::Trader, NOW);
        assert_eq!(
            a.authenticate(Some(&expired), NOW).unwrap_err(),
            AuthError::Invalid("expired".into())
        );
        let forged = sign_jwt(b"other-secret", "mallory", Role::Admin, NOW + 60);
        assert_eq!(
            a.authenticate(Some(&forged), NOW).unwrap_err(),
            AuthError::Invalid("bad signature".into())
        );
        // A valid token with its claims swapped for an admin's keeps the old signature.
        let parts: Vec<&str> = good.split('.').collect();
        let admin_claims = URL_SAFE_NO_PAD
            .encode(serde_json::json!({"sub":"alice","role":"admin","exp":NOW + 60}).to_string());
        let tampered = format!("{}.{admin_claims}.{}", parts[0], parts[2]);
        assert_eq!(
            a.authenticate(Some(&tampered), NOW).unwrap_err().code(),
            "invalid-credentials"
        );
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(
            a.authenticate(Some(&none_alg), NOW).unwrap_err(),
            AuthError::Invalid("only HS256 is accepted".into())
        );
        let no_jwt = Authenticator::from_config("", "").unwrap();
        assert_eq!(
            no_jwt.authenticate(Some(&good), NOW).unwrap_err().code(),
            "invalid-credentials"
        );
    }

    #[test]
    fn key_lists_are_validated() {
        for bad in ["admin", "root:00", &format!("admin:{}", "z".repeat(64))] {
            assert_eq!(
                Authenticator::from_config(bad, "").unwrap_err().code(),
                "auth-misconfigured",
                "{bad}"
            );
        }
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
