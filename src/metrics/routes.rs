//! Route templates (and methods) for metric labels: a request path with its ids replaced, or `other` for
//! anything the node does not route, so a client cannot grow the series by inventing paths.

/// Every routed path, ids as `{id}` / `{mid}`, files as `{file}`.
const TEMPLATES: &[&str] = &[
    "/api/v1/auth/register/",
    "/api/v1/auth/login/",
    "/api/v1/auth/refresh/",
    "/api/v1/auth/logout/",
    "/api/v1/chat/chatrooms/",
    "/api/v1/chat/chatrooms/create/",
    "/api/v1/chat/chatrooms/{id}/enter/",
    "/api/v1/chat/chatrooms/{id}/leave/",
    "/api/v1/chat/chatrooms/{id}/messages/",
    "/api/v1/chat/chatrooms/{id}/events/",
    "/api/v1/chat/chatrooms/{id}/messages/send/",
    "/api/v1/chat/chatrooms/{id}/read/",
    "/api/v1/chat/chatrooms/{id}/members/",
    "/api/v1/chat/chatrooms/{id}/messages/{mid}/receipts/",
    "/api/v1/chat/chatrooms/{id}/messages/{mid}/reaction/",
    "/api/v1/chat/chatrooms/{id}/messages/{mid}/",
    "/api/v1/chat/direct/",
    "/api/v1/users/lookup/",
    "/api/v1/users/blocked/",
    "/api/v1/users/{id}/block/",
    "/api/v1/users/{id}/unblock/",
    "/api/v1/users/{id}/presence/",
    "/api/v1/users/me/",
    "/api/v1/asyncapi.json",
    "/api/v1/schema",
    "/api/v1/docs",
    "/ws/chat/{id}/",
    "/media/{file}",
    "/livez",
    "/healthz",
    "/readyz",
];

/// The template `path` matches, or `"other"`.
pub fn template(path: &str) -> &'static str {
    let path = path.split('?').next().unwrap_or_default();
    TEMPLATES
        .iter()
        .find(|template| matches(template, path))
        .copied()
        .unwrap_or("other")
}

/// The method as a label: the standard ones, `other` for any a client invents.
pub fn method(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

/// One pass over the bytes, stopping at the first difference: it runs on every request, and
/// splitting both strings at each of the templates cost ~19k instructions a request.
fn matches(template: &str, path: &str) -> bool {
    let (template, path) = (template.as_bytes(), path.as_bytes());
    let (mut t, mut p) = (0, 0);
    while t < template.len() {
        if template[t] == b'{' {
            let Some(close) = template[t..].iter().position(|&b| b == b'}') else {
                return false;
            };
            let digits = &template[t..=t + close] != b"{file}";
            let start = p;
            while p < path.len() && path[p] != b'/' {
                if digits && !path[p].is_ascii_digit() {
                    return false;
                }
                p += 1;
            }
            if p == start {
                return false;
            }
            t += close + 1;
        } else if path.get(p) == Some(&template[t]) {
            t += 1;
            p += 1;
        } else {
            return false;
        }
    }
    p == path.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_templates_and_unknown_ones_to_other() {
        assert_eq!(
            template("/api/v1/chat/chatrooms/12/messages/send/"),
            "/api/v1/chat/chatrooms/{id}/messages/send/"
        );
        assert_eq!(
            template("/api/v1/chat/chatrooms/3/messages/9/receipts/"),
            "/api/v1/chat/chatrooms/{id}/messages/{mid}/receipts/"
        );
        assert_eq!(
            template("/api/v1/chat/chatrooms/3/messages/9/reaction/"),
            "/api/v1/chat/chatrooms/{id}/messages/{mid}/reaction/"
        );
        assert_eq!(
            template("/api/v1/chat/chatrooms/3/messages/9/"),
            "/api/v1/chat/chatrooms/{id}/messages/{mid}/"
        );
        assert_eq!(template("/media/abc.png"), "/media/{file}");
        assert_eq!(template("/ws/chat/5/"), "/ws/chat/{id}/");
        assert_eq!(template("/readyz"), "/readyz");
        for unknown in [
            "/",
            "/api/v1/chat/chatrooms/x/enter/",
            "/media/",
            "/nothing",
            "/media/a/b",
            "/api/v1/chat/chatrooms//enter/",
            "/api/v1/chat/chatrooms/12/messages/send/x",
            "/readyzz",
            "/api/v1/users/7/presence",
        ] {
            assert_eq!(template(unknown), "other", "{unknown}");
        }
    }
}
