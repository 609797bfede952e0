//! Redirects: a feed follows one only within its own origin (same scheme,
//! host and port), at most [`MAX_REDIRECTS`] in a row. A stream that moves
//! anywhere else is an error naming the new location, so the user decides
//! whether to trust it: following it would store whatever another host
//! serves (and, with a token in the URL's query, hand that token over).
//!
//! The HTTP feeds (Companies House, SSE) get this through the client's
//! [`policy`]; the WebSocket upgrade follows by hand with [`next_hop`]
//! (tungstenite never follows). Both name a refused move with [`moved`].

use url::Url;

use super::secret::redact_url;

/// Same-origin redirects followed in a row before giving up.
pub const MAX_REDIRECTS: usize = 3;

/// Same scheme, host and port (the default port of the scheme counts).
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin() && a.origin().is_tuple()
}

/// The redirect policy of every HTTP feed client: follow within the origin
/// of the first request, at most [`MAX_REDIRECTS`] times; otherwise hand the
/// 3xx response to the feed, which reports it with [`moved`].
pub fn policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let within = attempt.previous().first().is_some_and(|first| same_origin(first, attempt.url()));
        if within && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// Where a 3xx answer to `from` points, when it may be followed: the
/// `Location` resolved against `from`, if it stays in `from`'s origin.
pub fn next_hop(from: &Url, location: Option<&str>) -> Option<Url> {
    let to = from.join(location?).ok()?;
    same_origin(from, &to).then_some(to)
}

/// The error for a redirect that was not followed, naming where the stream
/// went (redacted, without credentials) and what to do.
pub fn moved(status: u16, location: Option<&str>, from: &Url) -> String {
    match location.and_then(|l| from.join(l).ok()) {
        Some(to) if same_origin(from, &to) => {
            format!("HTTP {status}: more than {MAX_REDIRECTS} redirects, the last to {}; update the URL", shown(to))
        }
        Some(to) => format!(
            "HTTP {status}: the stream moved to {}; update the URL (redirects are followed only to the same scheme, host and port)",
            shown(to)
        ),
        None => format!("HTTP {status}: a redirect without a usable Location; check the URL"),
    }
}

/// A URL fit for the connections pane: no user or password, no token. Its
/// serialisation percent-encodes anything a terminal would act on.
fn shown(mut url: Url) -> String {
    let _ = url.set_username("");
    let _ = url.set_password(None);
    redact_url(url.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn origin_is_scheme_host_and_port() {
        assert!(same_origin(&u("http://127.0.0.1:8080/a"), &u("http://127.0.0.1:8080/b?x=1")));
        assert!(same_origin(&u("https://h/a"), &u("https://h:443/b")));
        assert!(!same_origin(&u("http://h/a"), &u("https://h/a")), "scheme");
        assert!(!same_origin(&u("http://h:80/a"), &u("http://h:81/a")), "port");
        assert!(!same_origin(&u("http://h/a"), &u("http://evil.h/a")), "host");
        assert!(!same_origin(&u("ws://h/a"), &u("http://h/a")));
    }

    #[test]
    fn next_hop_only_within_the_origin() {
        let from = u("ws://127.0.0.1:9/ws?token=t");
        assert_eq!(next_hop(&from, Some("/v2/ws")), Some(u("ws://127.0.0.1:9/v2/ws")));
        assert_eq!(next_hop(&from, Some("ws://127.0.0.1:10/ws")), None);
        assert_eq!(next_hop(&from, None), None);
    }

    #[test]
    fn a_move_names_the_new_place_without_secrets() {
        let from = u("http://127.0.0.1:9/companies");
        assert_eq!(
            moved(301, Some("http://127.0.0.1:1234/x"), &from),
            "HTTP 301: the stream moved to http://127.0.0.1:1234/x; update the URL (redirects are followed only to the same scheme, host and port)"
        );
        let e = moved(302, Some("https://user:pw@other/s?token=sekrit"), &from);
        assert!(e.contains("https://other/s?token=***") && !e.contains("sekrit") && !e.contains("pw"), "{e}");
        assert!(
            moved(307, Some("/again"), &from).contains("more than 3 redirects, the last to http://127.0.0.1:9/again")
        );
        assert!(moved(308, None, &from).contains("without a usable Location"));
        let e = moved(301, Some("http://h/\u{1b}]0;x\u{7}"), &from);
        assert!(!e.chars().any(char::is_control), "{e:?}");
    }
}
