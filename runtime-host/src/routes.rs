//! Spin's HTTP route semantics.
//!
//! A route is either exact (`/api/health` matches only that path) or a
//! wildcard (`/api/...` matches `/api` and everything below it). When several
//! routes match, an exact route wins over any wildcard and a longer wildcard
//! prefix wins over a shorter one. A `{ private = true }` route is never
//! matched from outside: such a component is reachable only by chaining.

use anyhow::bail;

/// One route of the HTTP trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The route as written in the manifest (`/api/v1/data/...`).
    pub raw: String,
    /// The path the route is anchored at, without the wildcard (`/api/v1/data`).
    pub base: String,
    pub wildcard: bool,
    pub component: String,
}

/// A successful match: the component and the request path split at the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub route: &'a Route,
    /// The part of the path below the route (`/health`), `""` for an exact match.
    pub path_info: String,
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Build a router from `(route, component)` pairs; private routes are left out.
    pub fn new<'a>(routes: impl IntoIterator<Item = (&'a str, &'a str)>) -> anyhow::Result<Self> {
        let mut parsed: Vec<Route> = Vec::new();
        for (raw, component) in routes {
            let route = parse(raw, component)?;
            if let Some(dup) = parsed
                .iter()
                .find(|r| r.base == route.base && r.wildcard == route.wildcard)
            {
                bail!(
                    "route `{raw}` of `{component}` duplicates route `{}` of `{}`",
                    dup.raw,
                    dup.component
                );
            }
            parsed.push(route);
        }
        // Most specific first: exact routes, then wildcards by descending prefix length.
        parsed.sort_by(|a, b| {
            a.wildcard
                .cmp(&b.wildcard)
                .then(b.base.len().cmp(&a.base.len()))
        });
        Ok(Self { routes: parsed })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route serving `path`, if any.
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let path = if path.is_empty() { "/" } else { path };
        self.routes.iter().find_map(|route| {
            if !route.wildcard {
                return (path == route.base).then(|| RouteMatch {
                    route,
                    path_info: String::new(),
                });
            }
            let rest = if route.base == "/" {
                Some(path)
            } else {
                path.strip_prefix(route.base.as_str())
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            };
            rest.map(|rest| RouteMatch {
                route,
                path_info: rest.to_string(),
            })
        })
    }
}

fn parse(raw: &str, component: &str) -> anyhow::Result<Route> {
    if !raw.starts_with('/') {
        bail!("route `{raw}` must start with `/`");
    }
    let (base, wildcard) = match raw.strip_suffix("/...") {
        Some(base) => (if base.is_empty() { "/" } else { base }, true),
        None if raw.contains("...") => bail!("route `{raw}`: `...` may only end a route"),
        None => (raw, false),
    };
    let base = if base.len() > 1 {
        base.trim_end_matches('/')
    } else {
        base
    };
    Ok(Route {
        raw: raw.to_string(),
        base: base.to_string(),
        wildcard,
        component: component.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new([
            ("/api/v1/data/...", "data"),
            ("/api/v1/data/special", "special"),
            ("/api/...", "api"),
            ("/exact", "exact"),
            ("/...", "fallback"),
        ])
        .unwrap()
    }

    fn matched(path: &str) -> Option<(String, String)> {
        router()
            .route(path)
            .map(|m| (m.route.component.clone(), m.path_info))
    }

    #[test]
    fn matches_by_specificity() {
        let cases = [
            ("/api/v1/data/special", Some(("special", ""))),
            ("/api/v1/data/special/x", Some(("data", "/special/x"))),
            ("/api/v1/data", Some(("data", ""))),
            ("/api/v1/data/stocks/AAPL", Some(("data", "/stocks/AAPL"))),
            ("/api/v1/database", Some(("api", "/v1/database"))),
            ("/exact", Some(("exact", ""))),
            ("/exact/more", Some(("fallback", "/exact/more"))),
            ("/", Some(("fallback", "/"))),
            ("", Some(("fallback", "/"))),
        ];
        for (path, expected) in cases {
            let expected = expected.map(|(c, p)| (c.to_string(), p.to_string()));
            assert_eq!(matched(path), expected, "path {path}");
        }
    }

    #[test]
    fn unmatched_path_without_catch_all() {
        let router = Router::new([("/api/...", "api")]).unwrap();
        assert!(router.route("/other").is_none());
        assert!(router.route("/apix").is_none());
    }

    #[test]
    fn rejects_duplicate_and_malformed_routes() {
        assert!(Router::new([("/a/...", "x"), ("/a/...", "y")]).is_err());
        assert!(Router::new([("a", "x")]).is_err());
        assert!(Router::new([("/a/.../b", "x")]).is_err());
    }
}
