//! Spin's HTTP route semantics.
//!
//! A route is a list of segments, each literal (`data`) or a named parameter
//! (`:symbol`, one path segment, passed to the component as the header
//! `spin-path-match-symbol`), optionally ending in the wildcard `/...`, which
//! matches the route itself and everything below it. When several routes
//! match, the most specific wins: segment by segment a literal beats a
//! parameter, a longer route beats a shorter one, and a route without the
//! wildcard beats the same route with it. A `{ private = true }` route is
//! never matched from outside: such a component is reachable only by chaining.
//! As in Spin, a route written twice is served by its last declaration (the
//! host warns at start).

use anyhow::bail;

/// One segment of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `:name`
    Param(String),
}

/// One route of the HTTP trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The route as written in the manifest (`/api/v1/data/...`).
    pub raw: String,
    pub segments: Vec<Segment>,
    pub wildcard: bool,
    pub component: String,
}

/// A successful match: the component, the path below the route and the
/// named parameters' values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub route: &'a Route,
    /// The part of the path below the route (`/health`), `""` for an exact match.
    pub path_info: String,
    /// `(name, value)` of each `:name` segment, in route order.
    pub params: Vec<(String, String)>,
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
            if let Some(i) = parsed.iter().position(|r| r.raw == route.raw) {
                let replaced = parsed.remove(i);
                tracing::warn!(
                    route = raw,
                    replaced = %replaced.component,
                    effective = %route.component,
                    "a route is declared twice; the last declaration serves it"
                );
            }
            parsed.push(route);
        }
        // Most specific first, so the first route that matches is the best.
        parsed.sort_by_key(|route| std::cmp::Reverse(specificity(route)));
        Ok(Self { routes: parsed })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route serving `path`, if any.
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let path = if path.is_empty() { "/" } else { path };
        self.routes.iter().find_map(|route| route.matches(path))
    }
}

impl Route {
    fn matches(&self, path: &str) -> Option<RouteMatch<'_>> {
        let mut rest = path;
        let mut params = Vec::new();
        for segment in &self.segments {
            let after_slash = rest.strip_prefix('/')?;
            let (head, tail) = match after_slash.find('/') {
                Some(i) => after_slash.split_at(i),
                None => (after_slash, ""),
            };
            match segment {
                Segment::Literal(literal) if literal == head => {}
                Segment::Param(name) if !head.is_empty() => {
                    params.push((name.clone(), head.to_string()));
                }
                _ => return None,
            }
            rest = tail;
        }
        let path_info = if self.wildcard {
            rest.to_string()
        } else if rest.is_empty() || rest == "/" {
            String::new()
        } else {
            return None;
        };
        Some(RouteMatch {
            route: self,
            path_info,
            params,
        })
    }
}

/// Orders routes from least to most specific (see the module comment).
fn specificity(route: &Route) -> (Vec<u8>, bool) {
    let ranks = route
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Literal(_) => 2,
            Segment::Param(_) => 1,
        })
        .collect();
    (ranks, !route.wildcard)
}

fn parse(raw: &str, component: &str) -> anyhow::Result<Route> {
    if !raw.starts_with('/') {
        bail!("route `{raw}` must start with `/`");
    }
    let (body, wildcard) = match raw.strip_suffix("/...") {
        Some(body) => (body, true),
        None if raw.contains("...") => bail!("route `{raw}`: `...` may only end a route"),
        None => (raw, false),
    };
    let mut segments = Vec::new();
    for segment in body.split('/').filter(|s| !s.is_empty()) {
        segments.push(match segment.strip_prefix(':') {
            Some("") => bail!("route `{raw}`: a `:` segment needs a name"),
            Some(name) => Segment::Param(name.to_string()),
            None => Segment::Literal(segment.to_string()),
        });
    }
    Ok(Route {
        raw: raw.to_string(),
        segments,
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
            ("/api/v1/data/", Some(("data", "/"))),
            ("/api/v1/data/stocks/AAPL", Some(("data", "/stocks/AAPL"))),
            ("/api/v1/data/stocks/AAPL/", Some(("data", "/stocks/AAPL/"))),
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
    fn named_segments_match_one_segment_and_are_captured() {
        let router = Router::new([
            ("/base/:path_segment/:path_end/...", "shape"),
            ("/stocks/:symbol", "stock"),
            ("/stocks/index", "index"),
        ])
        .unwrap();
        let m = router.route("/base/path/end/rest").unwrap();
        assert_eq!(m.route.component, "shape");
        assert_eq!(m.path_info, "/rest");
        assert_eq!(
            m.params,
            [
                ("path_segment".to_string(), "path".to_string()),
                ("path_end".to_string(), "end".to_string())
            ]
        );
        let m = router.route("/base/path/end").unwrap();
        assert_eq!(m.path_info, "");
        assert!(router.route("/base/path").is_none(), "one segment short");
        assert!(router.route("/base//end/x").is_none(), "an empty segment");

        let m = router.route("/stocks/7203.T").unwrap();
        assert_eq!(
            (m.route.component.as_str(), m.params[0].1.as_str()),
            ("stock", "7203.T")
        );
        // A literal beats a parameter at the same position.
        assert_eq!(
            router.route("/stocks/index").unwrap().route.component,
            "index"
        );
        assert!(router.route("/stocks/7203.T/bars").is_none());
    }

    #[test]
    fn the_longer_and_the_exact_route_win() {
        let router = Router::new([
            ("/one/...", "short"),
            ("/one/two/three/...", "long"),
            ("/one/two", "exact"),
            ("/one/two/...", "wild"),
        ])
        .unwrap();
        let component = |path| router.route(path).unwrap().route.component.clone();
        assert_eq!(component("/one/two/three/four"), "long");
        assert_eq!(component("/one/two"), "exact");
        assert_eq!(component("/one/two/x"), "wild");
        assert_eq!(component("/one/x"), "short");
    }

    #[test]
    fn unmatched_path_without_catch_all() {
        let router = Router::new([("/api/...", "api")]).unwrap();
        assert!(router.route("/other").is_none());
        assert!(router.route("/apix").is_none());
    }

    #[test]
    fn a_route_declared_twice_is_served_by_the_last() {
        let router = Router::new([("/a/...", "x"), ("/a/...", "y")]).unwrap();
        assert_eq!(router.routes().len(), 1);
        assert_eq!(router.route("/a/b").unwrap().route.component, "y");
    }

    #[test]
    fn rejects_malformed_routes() {
        assert!(Router::new([("a", "x")]).is_err());
        assert!(Router::new([("/a/.../b", "x")]).is_err());
        assert!(Router::new([("/a/:/b", "x")]).is_err());
    }
}
