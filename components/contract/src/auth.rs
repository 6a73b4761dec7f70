//! Who may call what: roles `viewer` < `trader` < `admin`.
//!
//! Credentials are an API key or a JWT, sent as
//! `Authorization: Bearer <credential>` (or an API key as `x-api-key`).
//! API keys are configured as `role:sha256-hex` entries (a secret variable):
//! the key itself is never stored, only its SHA-256. A JWT carries `sub`,
//! `role` and `exp`, and is either HS256-signed with the `jwt_secret`
//! variable's key or RS256-signed by an identity provider: its issuer
//! (`jwt_issuer`), the audience its tokens must name (`jwt_audience`) and its
//! public keys (`jwt_jwks`, the JWKS document it publishes). The mesh
//! (Istio's `RequestAuthentication`) checks the same RS256 tokens against the
//! same JWKS at the edge, so a token means the same with and without it.
//! Through the mesh an API key travels as `x-api-key`: Istio reads every
//! `Authorization: Bearer` value as a JWT and refuses one that is not.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rsa::BigUint;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use rsa::{RsaPrivateKey, RsaPublicKey};

/// The smallest RSA modulus accepted in a JWKS, in bits.
pub const MIN_RSA_BITS: usize = 2048;

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
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn names(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

/// One key of a JWKS document (RFC 7517); only RSA signing keys are used.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// An identity provider whose RS256 tokens are accepted.
#[derive(Debug, Clone)]
struct Issuer {
    name: String,
    audience: Option<String>,
    /// `(kid, key)`: the JWKS's RSA signing keys, ready to verify with.
    keys: Vec<(Option<String>, VerifyingKey<Sha256>)>,
}

impl Issuer {
    fn from_jwks(jwks: &str, name: &str, audience: &str) -> Result<Self, AuthError> {
        let misconfigured = |why: String| AuthError::Misconfigured(why);
        if name.is_empty() {
            return Err(misconfigured(
                "`jwt_jwks` is set but `jwt_issuer` is not: tokens must be pinned to their issuer"
                    .into(),
            ));
        }
        let jwks: Jwks = serde_json::from_str(jwks)
            .map_err(|e| misconfigured(format!("`jwt_jwks` is not a JWKS document: {e}")))?;
        let mut keys = Vec::new();
        for jwk in jwks.keys {
            let signing = jwk.kty == "RSA"
                && jwk.usage.as_deref().is_none_or(|u| u == "sig")
                && jwk.alg.as_deref().is_none_or(|a| a == "RS256");
            if !signing {
                continue;
            }
            let kid = jwk.kid.clone().unwrap_or_default();
            let component = |part: Option<&String>| {
                part.and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
                    .map(|bytes| BigUint::from_bytes_be(&bytes))
                    .ok_or_else(|| misconfigured(format!("JWKS key `{kid}`: unreadable n or e")))
            };
            let key = RsaPublicKey::new(component(jwk.n.as_ref())?, component(jwk.e.as_ref())?)
                .map_err(|e| misconfigured(format!("JWKS key `{kid}`: {e}")))?;
            if key.n().bits() < MIN_RSA_BITS {
                return Err(misconfigured(format!(
                    "JWKS key `{kid}`: {} bits, under {MIN_RSA_BITS}",
                    key.n().bits()
                )));
            }
            keys.push((jwk.kid, VerifyingKey::new(key)));
        }
        if keys.is_empty() {
            return Err(misconfigured("`jwt_jwks` has no RS256 signing key".into()));
        }
        Ok(Self {
            name: name.to_string(),
            audience: (!audience.is_empty()).then(|| audience.to_string()),
            keys,
        })
    }

    /// The signature is one of the issuer's keys' (the one `kid` names, if any).
    fn verify(&self, signed: &str, signature: &[u8], kid: Option<&str>) -> Result<(), AuthError> {
        let signature = Signature::try_from(signature)
            .map_err(|_| AuthError::Invalid("unreadable signature".into()))?;
        let mut candidates = self
            .keys
            .iter()
            .filter(|(key_id, _)| kid.is_none() || key_id.as_deref() == kid)
            .peekable();
        if candidates.peek().is_none() {
            return Err(AuthError::Invalid("unknown key id".into()));
        }
        candidates
            .any(|(_, key)| key.verify(signed.as_bytes(), &signature).is_ok())
            .then_some(())
            .ok_or_else(|| AuthError::Invalid("bad signature".into()))
    }

    fn check_claims(&self, claims: &Claims) -> Result<(), AuthError> {
        if claims.iss.as_deref() != Some(self.name.as_str()) {
            return Err(AuthError::Invalid("wrong issuer".into()));
        }
        if let Some(audience) = &self.audience
            && !claims.aud.as_ref().is_some_and(|aud| aud.names(audience))
        {
            return Err(AuthError::Invalid("wrong audience".into()));
        }
        Ok(())
    }
}

/// The configured credentials.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    keys: Vec<(Role, [u8; 32])>,
    jwt_secret: Option<Vec<u8>>,
    issuer: Option<Issuer>,
}

impl Authenticator {
    /// `api_keys`: comma-separated `role:sha256-hex`; `jwt_secret`: the HS256
    /// key (empty: HS256 JWTs are not accepted). Both empty and no
    /// [issuer](Self::with_issuer): nobody is authorised.
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
        Ok(Self {
            keys,
            jwt_secret,
            issuer: None,
        })
    }

    /// Also accept RS256 tokens from an identity provider: `jwks` is the JWKS
    /// document it publishes (empty: none accepted), `issuer` the `iss` its
    /// tokens carry (required with a JWKS), `audience` the `aud` they must
    /// name (empty: not checked).
    pub fn with_issuer(
        mut self,
        jwks: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, AuthError> {
        if !jwks.trim().is_empty() {
            self.issuer = Some(Issuer::from_jwks(jwks, issuer, audience)?);
        }
        Ok(self)
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
        let invalid = |why: &str| AuthError::Invalid(why.to_string());
        let (signed, signature) = token.rsplit_once('.').ok_or_else(|| invalid("malformed"))?;
        let (header, payload) = signed.split_once('.').ok_or_else(|| invalid("malformed"))?;
        let header: Header = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| invalid("unreadable header"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| invalid("unreadable signature"))?;
        let issuer = match header.alg.as_str() {
            "HS256" => {
                self.verify_hs256(signed, &signature)?;
                None
            }
            "RS256" => {
                let issuer = self
                    .issuer
                    .as_ref()
                    .ok_or_else(|| invalid("RS256 tokens are not accepted here"))?;
                issuer.verify(signed, &signature, header.kid.as_deref())?;
                Some(issuer)
            }
            _ => return Err(invalid("only HS256 and RS256 are accepted")),
        };
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or_else(|| invalid("claims need sub, role and exp"))?;
        if let Some(issuer) = issuer {
            issuer.check_claims(&claims)?;
        }
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

    fn verify_hs256(&self, signed: &str, signature: &[u8]) -> Result<(), AuthError> {
        let secret = self
            .jwt_secret
            .as_ref()
            .ok_or_else(|| AuthError::Invalid("HS256 tokens are not accepted here".into()))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|_| AuthError::Misconfigured("unusable JWT secret".into()))?;
        mac.update(signed.as_bytes());
        mac.verify_slice(signature)
            .map_err(|_| AuthError::Invalid("bad signature".into()))
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

/// Sign an RS256 JWT with an identity provider's key (tests and tooling):
/// `claims` as given, the header naming `kid`.
pub fn sign_rs256(key: &RsaPrivateKey, kid: &str, claims: &serde_json::Value) -> String {
    let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": kid });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// A public key as a JWKS entry (what an identity provider publishes).
pub fn jwk(key: &RsaPublicKey, kid: &str) -> serde_json::Value {
    serde_json::json!({
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    })
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
            AuthError::Invalid("only HS256 and RS256 are accepted".into())
        );
        let no_jwt = Authenticator::from_config("", "").unwrap();
        assert_eq!(
            no_jwt.authenticate(Some(&good), NOW).unwrap_err().code(),
            "invalid-credentials"
        );
    }

    fn idp_key(bits: usize, seed: u64) -> RsaPrivateKey {
        use rand::SeedableRng;
        RsaPrivateKey::new(&mut rand::rngs::StdRng::seed_from_u64(seed), bits).unwrap()
    }

    /// The identity provider's key, another key nobody trusts, and a JWKS with
    /// the first (plus keys that must be skipped: encryption, EC).
    fn idp() -> &'static (RsaPrivateKey, RsaPrivateKey, String) {
        static IDP: std::sync::OnceLock<(RsaPrivateKey, RsaPrivateKey, String)> =
            std::sync::OnceLock::new();
        IDP.get_or_init(|| {
            let (key, other) = (idp_key(2048, 1), idp_key(2048, 2));
            let mut encryption = jwk(&other.to_public_key(), "enc-1");
            encryption["use"] = "enc".into();
            let jwks = serde_json::json!({ "keys": [
                { "kty": "EC", "kid": "ec-1", "crv": "P-256", "x": "AA", "y": "AA" },
                encryption,
                jwk(&key.to_public_key(), "k1"),
            ]});
            (key, other, jwks.to_string())
        })
    }

    fn claims(role: &str, iss: &str, aud: serde_json::Value, exp: i64) -> serde_json::Value {
        serde_json::json!({ "sub": "bob", "role": role, "iss": iss, "aud": aud, "exp": exp })
    }

    #[test]
    fn rs256_tokens_are_checked_for_key_issuer_audience_and_expiry() {
        let (key, other, jwks) = idp();
        let a = auth()
            .with_issuer(jwks, "https://id.example.com/", "daytrade")
            .unwrap();
        let iss = "https://id.example.com/";
        let cases: Vec<(&str, String, Result<Role, &str>)> = vec![
            (
                "valid",
                sign_rs256(
                    key,
                    "k1",
                    &claims("trader", iss, "daytrade".into(), NOW + 60),
                ),
                Ok(Role::Trader),
            ),
            (
                "audience in an array",
                sign_rs256(
                    key,
                    "k1",
                    &claims("admin", iss, serde_json::json!(["x", "daytrade"]), NOW + 60),
                ),
                Ok(Role::Admin),
            ),
            (
                "signed by a key the JWKS does not hold",
                sign_rs256(
                    other,
                    "k1",
                    &claims("admin", iss, "daytrade".into(), NOW + 60),
                ),
                Err("bad signature"),
            ),
            (
                "the JWKS's encryption key named",
                sign_rs256(
                    other,
                    "enc-1",
                    &claims("admin", iss, "daytrade".into(), NOW + 60),
                ),
                Err("unknown key id"),
            ),
            (
                "unknown kid",
                sign_rs256(
                    key,
                    "k9",
                    &claims("admin", iss, "daytrade".into(), NOW + 60),
                ),
                Err("unknown key id"),
            ),
            (
                "another issuer",
                sign_rs256(
                    key,
                    "k1",
                    &claims(
                        "admin",
                        "https://evil.example/",
                        "daytrade".into(),
                        NOW + 60,
                    ),
                ),
                Err("wrong issuer"),
            ),
            (
                "another audience",
                sign_rs256(key, "k1", &claims("admin", iss, "grafana".into(), NOW + 60)),
                Err("wrong audience"),
            ),
            (
                "no audience",
                sign_rs256(
                    key,
                    "k1",
                    &claims("admin", iss, serde_json::Value::Null, NOW + 60),
                ),
                Err("wrong audience"),
            ),
            (
                "expired",
                sign_rs256(key, "k1", &claims("trader", iss, "daytrade".into(), NOW)),
                Err("expired"),
            ),
        ];
        for (case, token, expected) in cases {
            let got = a
                .authenticate(Some(&token), NOW)
                .map(|p| p.role)
                .map_err(|e| e.to_string());
            let expected = expected.map_err(|why| AuthError::Invalid(why.into()).to_string());
            assert_eq!(got, expected, "{case}");
        }
        // Without a configured issuer, RS256 tokens mean nothing.
        let token = sign_rs256(
            key,
            "k1",
            &claims("trader", iss, "daytrade".into(), NOW + 60),
        );
        assert_eq!(
            auth().authenticate(Some(&token), NOW).unwrap_err(),
            AuthError::Invalid("RS256 tokens are not accepted here".into())
        );
        // Algorithm confusion: an HS256 token whose HMAC key is the public key.
        let public = serde_json::to_string(&jwk(&key.to_public_key(), "k1")).unwrap();
        let confused = sign_jwt(public.as_bytes(), "mallory", Role::Admin, NOW + 60);
        assert_eq!(
            a.authenticate(Some(&confused), NOW).unwrap_err(),
            AuthError::Invalid("bad signature".into())
        );
    }

    #[test]
    fn issuer_configuration_is_validated() {
        let (key, _, jwks) = idp();
        let small =
            serde_json::json!({ "keys": [jwk(&idp_key(1024, 3).to_public_key(), "small")] });
        let mut unreadable = jwk(&key.to_public_key(), "k1");
        unreadable["n"] = "%%%".into();
        let cases = [
            (jwks.clone(), "", "pinned to their issuer"),
            ("{".to_string(), "i", "not a JWKS document"),
            (
                r#"{"keys":[{"kty":"EC","crv":"P-256"}]}"#.to_string(),
                "i",
                "no RS256 signing key",
            ),
            (small.to_string(), "i", "1024 bits, under 2048"),
            (
                serde_json::json!({ "keys": [unreadable] }).to_string(),
                "i",
                "unreadable n or e",
            ),
        ];
        for (jwks, issuer, why) in cases {
            let err = auth().with_issuer(&jwks, issuer, "").unwrap_err();
            assert_eq!(err.code(), "auth-misconfigured");
            assert!(err.to_string().contains(why), "{err} should say {why}");
        }
        // No JWKS: nothing to check, RS256 stays off.
        assert!(auth().with_issuer(" ", "", "").unwrap().issuer.is_none());
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
