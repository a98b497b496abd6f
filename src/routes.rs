//! A router that keeps the list of what it serves. Every door builds its routes through [`Routes`], so the
//! list is the router itself, not a copy of it: the authorization matrix test holds each entry to a row, and
//! a route added without one fails that test.

use axum::Router;
use axum::handler::Handler;
use axum::routing;

use crate::AppState;

/// One route: an HTTP method and a path template as the router matches it (`/fhir/{rtype}/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Served {
    pub method: &'static str,
    pub path: String,
}

#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    served: Vec<Served>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(mut self, method: &'static str, path: &str, route: routing::MethodRouter<AppState>) -> Self {
        // axum merges method routers given for one path, so `.get(p, a).post(p, b)` is one route.
        self.router = self.router.route(path, route);
        self.served.push(Served {
            method,
            path: path.to_owned(),
        });
        self
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add("GET", path, routing::get(handler))
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add("POST", path, routing::post(handler))
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add("PUT", path, routing::put(handler))
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add("DELETE", path, routing::delete(handler))
    }

    /// Applies layers or fallbacks to the routes so far (they do not add routes).
    pub fn map(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.served.extend(other.served);
        self
    }

    pub fn nest(mut self, prefix: &str, other: Routes) -> Self {
        self.router = self.router.nest(prefix, other.router);
        self.served.extend(other.served.into_iter().map(|s| Served {
            // A nested `/` is served at the prefix itself.
            path: format!("{prefix}{}", if s.path == "/" { "" } else { &s.path }),
            ..s
        }));
        self
    }

    pub fn served(&self) -> &[Served] {
        &self.served
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}
