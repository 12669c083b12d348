//! The user route table: `httpApi` / `http` events matched the way API Gateway matches them
//! (most specific route wins: literal segments over `{param}` over `{proxy+}`, a method over ANY).

use std::collections::HashMap;
use tusk_manifest::EventSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// `httpApi`: API Gateway HTTP API, payload 2.0.
    V2,
    /// `http`: API Gateway REST API, payload 1.0.
    V1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Greedy(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Upper-case method, or `*` for any.
    pub method: String,
    /// The path as declared (`/users/{id}`), or `*` for the catch-all.
    pub path: String,
    pub payload: Payload,
    pub function: String,
    segments: Vec<Segment>,
}

impl Route {
    /// API Gateway's route key: `GET /users/{id}`, `ANY /{proxy+}`, or `$default`.
    pub fn route_key(&self) -> String {
        match (self.method.as_str(), self.path.as_str()) {
            ("*", "*") => "$default".to_string(),
            (m, p) => format!("{} {p}", if m == "*" { "ANY" } else { m }),
        }
    }

    /// How the route is shown to users: `GET /hello`, `ANY /*`.
    pub fn display(&self) -> String {
        let method = if self.method == "*" {
            "ANY"
        } else {
            &self.method
        };
        let path = if self.path == "*" { "/*" } else { &self.path };
        format!("{method} {path}")
    }

    /// A key equal for two routes that would claim the same requests.
    fn shape(&self) -> String {
        let segs: Vec<String> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => l.clone(),
                Segment::Param(_) => "{}".into(),
                Segment::Greedy(_) => "{+}".into(),
            })
            .collect();
        format!("{} {} {}", self.method, self.path == "*", segs.join("/"))
    }
}

pub struct Matched<'a> {
    pub route: &'a Route,
    pub params: HashMap<String, String>,
}

#[derive(Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

fn parse_segments(path: &str) -> Vec<Segment> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
                Segment::Greedy(name.to_string())
            } else if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Segment::Param(name.to_string())
            } else {
                Segment::Literal(s.to_string())
            }
        })
        .collect()
}

/// The routes a function's events declare.
pub fn routes_for(function: &str, events: &[EventSpec]) -> Vec<Route> {
    events
        .iter()
        .filter_map(|e| match e {
            EventSpec::HttpApi { method, path } => Some((method, path, Payload::V2)),
            EventSpec::Http { method, path } => Some((method, path, Payload::V1)),
            _ => None,
        })
        .map(|(method, path, payload)| Route {
            method: if method == "ANY" {
                "*".into()
            } else {
                method.to_uppercase()
            },
            path: path.clone(),
            payload,
            function: function.to_string(),
            segments: if path == "*" {
                vec![]
            } else {
                parse_segments(path)
            },
        })
        .collect()
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> RouteTable {
        RouteTable { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route in `candidates` that claims the same requests as a route of another
    /// function already in the table.
    pub fn conflict(&self, candidates: &[Route], replacing: &[String]) -> Option<(Route, Route)> {
        for c in candidates {
            for r in &self.routes {
                if replacing.contains(&r.function) {
                    continue;
                }
                if r.shape() == c.shape() {
                    return Some((c.clone(), r.clone()));
                }
            }
        }
        None
    }

    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let mut best: Option<((usize, usize, usize, bool), Matched<'_>)> = None;
        for route in &self.routes {
            if route.method != "*" && route.method != method {
                continue;
            }
            let Some(params) = match_segments(&route.segments, &parts, route.path == "*") else {
                continue;
            };
            let literals = route
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            let non_greedy = route
                .segments
                .iter()
                .filter(|s| !matches!(s, Segment::Greedy(_)))
                .count();
            let score = (
                usize::from(route.path != "*"),
                literals,
                non_greedy,
                route.method != "*",
            );
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, Matched { route, params }));
            }
        }
        best.map(|(_, m)| m)
    }
}

fn match_segments(
    segments: &[Segment],
    parts: &[&str],
    catch_all: bool,
) -> Option<HashMap<String, String>> {
    if catch_all {
        return Some(HashMap::new());
    }
    let mut params = HashMap::new();
    for (i, seg) in segments.iter().enumerate() {
        match seg {
            Segment::Literal(l) => {
                if parts.get(i) != Some(&l.as_str()) {
                    return None;
                }
            }
            Segment::Param(name) => {
                let v = parts.get(i)?;
                params.insert(name.clone(), decode(v));
            }
            Segment::Greedy(name) => {
                if i >= parts.len() {
                    return None;
                }
                params.insert(name.clone(), decode(&parts[i..].join("/")));
                return Some(params);
            }
        }
    }
    (segments.len() == parts.len()).then_some(params)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let ev = |m: &str, p: &str| EventSpec::HttpApi {
            method: m.into(),
            path: p.into(),
        };
        let mut routes = routes_for("users", &[ev("GET", "/users/{id}"), ev("GET", "/users/me")]);
        routes.extend(routes_for("proxy", &[ev("*", "/{proxy+}")]));
        routes.extend(routes_for("all", &[ev("*", "*")]));
        routes.extend(routes_for("post", &[ev("POST", "/users/{id}")]));
        RouteTable::new(routes)
    }

    #[test]
    fn most_specific_route_wins() {
        let t = table();
        let m = t.find("GET", "/users/me").unwrap();
        assert_eq!(m.route.function, "users");
        assert!(m.params.is_empty());
        let m = t.find("GET", "/users/42").unwrap();
        assert_eq!(m.params["id"], "42");
        assert_eq!(m.route.route_key(), "GET /users/{id}");
        assert_eq!(t.find("POST", "/users/42").unwrap().route.function, "post");
        let m = t.find("DELETE", "/a/b%20c/d").unwrap();
        assert_eq!(m.route.function, "proxy");
        assert_eq!(m.params["proxy"], "a/b c/d");
        assert_eq!(t.find("GET", "/").unwrap().route.function, "all");
        assert_eq!(t.find("GET", "/").unwrap().route.route_key(), "$default");
    }

    #[test]
    fn conflicts_are_found_across_functions_only() {
        let t = table();
        let other = routes_for(
            "other",
            &[EventSpec::HttpApi {
                method: "GET".into(),
                path: "/users/{name}".into(),
            }],
        );
        let (new, old) = t.conflict(&other, &[]).unwrap();
        assert_eq!(new.function, "other");
        assert_eq!(old.function, "users");
        assert!(t.conflict(&other, &["users".into()]).is_none());
    }
}
