//! The REST calls. The key goes only to the configured host: it is sent as
//! Basic auth on requests built from the configured base URL, redirects are
//! followed only within that origin (`feeds::redirect`), and it appears in
//! no error, log line or debug print ([`ApiKey`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;

use super::limiter::ServerLimit;
use crate::feeds::secret::ApiKey;
use crate::store::enrich::{Officer, Profile};

/// Officers paged per call: the API's maximum.
pub const PAGE: i64 = 100;
/// No company has this many officers; a server that pages past it is wrong
/// and must not keep us paging for ever.
const MAX_OFFICERS: i64 = 10_000;
/// The largest answer read.
const MAX_BODY: usize = 4 << 20;

/// What one call gave.
#[derive(Debug)]
pub enum Reply<T> {
    Ok(T),
    /// 404: no such company (for officers: none listed).
    NotFound,
    /// 401: the key was refused.
    AuthFailed,
    /// 429, or the 403 the API sends instead.
    OverLimit,
    /// 5xx, a timeout or no connection: counts toward the breaker.
    Failed(String),
    /// Any other answer (400, a redirect elsewhere, a body that is not the
    /// API's): the call is dropped, it would fail the same way again.
    Refused(String),
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    key: ApiKey,
    timeout: Duration,
}

/// One page of officers and where the next one starts (`None`: the last).
#[derive(Debug)]
pub struct OfficersPage {
    pub officers: Vec<Officer>,
    pub next: Option<i64>,
}

impl Client {
    pub fn new(base: &str, key: ApiKey, timeout: Duration) -> anyhow::Result<Self> {
        let http = crate::feeds::companies_house::http_client(base, timeout)?;
        Ok(Self { http, base: base.trim_end_matches('/').to_string(), key, timeout })
    }

    pub async fn profile(&self, number: &str) -> (Reply<Profile>, ServerLimit) {
        let (reply, limit) = self.get(&format!("/company/{number}")).await;
        let reply = match reply {
            Reply::Ok(body) => match serde_json::from_str::<Value>(&body) {
                Ok(v) => Reply::Ok(profile_of(&v, body)),
                Err(e) => Reply::Refused(format!("the profile is not JSON ({e})")),
            },
            Reply::NotFound => Reply::Ok(Profile { found: false, ..Profile::default() }),
            other => other.map_never(),
        };
        (reply, limit)
    }

    pub async fn officers(&self, number: &str, start: i64) -> (Reply<OfficersPage>, ServerLimit) {
        let (reply, limit) =
            self.get(&format!("/company/{number}/officers?items_per_page={PAGE}&start_index={start}")).await;
        let reply = match reply {
            Reply::Ok(body) => match serde_json::from_str::<OfficerList>(&body) {
                Ok(list) => Reply::Ok(page_of(list, start)),
                Err(e) => Reply::Refused(format!("the officer list is not the API's ({e})")),
            },
            Reply::NotFound => Reply::Ok(OfficersPage { officers: Vec::new(), next: None }),
            other => other.map_never(),
        };
        (reply, limit)
    }

    async fn get(&self, path: &str) -> (Reply<String>, ServerLimit) {
        let url = format!("{}{path}", self.base);
        let sent = self.http.get(&url).basic_auth(self.key.expose(), Some("")).timeout(self.timeout).send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return (
                    Reply::Failed(format!("no answer within {}", humantime::format_duration(self.timeout))),
                    ServerLimit::default(),
                )
            }
            Err(e) => {
                return (
                    Reply::Failed(self.key.scrub(&crate::feeds::companies_house::error_chain(&e))),
                    ServerLimit::default(),
                )
            }
        };
        let status = response.status().as_u16();
        let limit = server_limit(response.headers(), status);
        let reply = match status {
            200 => self.body(response).await,
            401 => Reply::AuthFailed,
            403 | 429 => Reply::OverLimit,
            404 => Reply::NotFound,
            500..=599 => Reply::Failed(format!("HTTP {status}")),
            300..=399 => Reply::Refused(format!(
                "HTTP {status}: a redirect away from the configured host, not followed (the key is sent nowhere else)"
            )),
            _ => Reply::Refused(format!("HTTP {status}")),
        };
        (reply, limit)
    }
}

impl Client {
    /// The body as text, refused past [`MAX_BODY`] (a profile is a few KB, a
    /// page of 100 officers under 100 KB): a wrong or hostile server cannot
    /// make us hold gigabytes.
    async fn body(&self, mut response: reqwest::Response) -> Reply<String> {
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Reply::Refused(format!("an answer larger than {} MiB", MAX_BODY >> 20));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Reply::Failed("the answer stopped arriving".into()),
                Err(e) => return Reply::Failed(self.key.scrub(&crate::feeds::companies_house::error_chain(&e))),
            }
        }
        match String::from_utf8(body) {
            Ok(text) => Reply::Ok(text),
            Err(_) => Reply::Refused("an answer that is not UTF-8 text".into()),
        }
    }
}

impl Reply<String> {
    /// The non-`Ok` answers, for another payload type.
    fn map_never<T>(self) -> Reply<T> {
        match self {
            Reply::Ok(_) => Reply::Refused("unexpected".into()),
            Reply::NotFound => Reply::NotFound,
            Reply::AuthFailed => Reply::AuthFailed,
            Reply::OverLimit => Reply::OverLimit,
            Reply::Failed(e) => Reply::Failed(e),
            Reply::Refused(e) => Reply::Refused(e),
        }
    }
}

/// The rate-limit headers, in either spelling of the remaining count.
fn server_limit(headers: &reqwest::header::HeaderMap, status: u16) -> ServerLimit {
    let number =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    ServerLimit {
        remaining: number("x-ratelimit-remain").or_else(|| number("x-ratelimit-remaining")),
        reset_in: number("x-ratelimit-reset").map(|epoch| Duration::from_secs(epoch.saturating_sub(now))),
        retry_after: number("retry-after").map(Duration::from_secs),
        over_limit: matches!(status, 403 | 429),
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn profile_of(v: &Value, raw: String) -> Profile {
    Profile {
        found: true,
        company_name: text(v, "company_name"),
        company_status: text(v, "company_status"),
        company_status_detail: text(v, "company_status_detail"),
        raw: Some(raw),
    }
}

#[derive(Deserialize)]
struct OfficerList {
    #[serde(default)]
    items: Vec<Value>,
    #[serde(default)]
    total_results: Option<i64>,
}

fn page_of(list: OfficerList, start: i64) -> OfficersPage {
    let officers: Vec<Officer> = list.items.iter().filter_map(officer_of).collect();
    let next = start + list.items.len() as i64;
    let more = !list.items.is_empty() && list.total_results.is_some_and(|total| next < total) && next < MAX_OFFICERS;
    OfficersPage { officers, next: more.then_some(next) }
}

fn officer_of(v: &Value) -> Option<Officer> {
    let birth = v.get("date_of_birth");
    let birth_part = |key| birth.and_then(|b| b.get(key)).and_then(Value::as_i64);
    Some(Officer {
        name: text(v, "name")?,
        role: text(v, "officer_role"),
        appointed_on: text(v, "appointed_on"),
        resigned_on: text(v, "resigned_on"),
        nationality: text(v, "nationality"),
        occupation: text(v, "occupation"),
        country_of_residence: text(v, "country_of_residence"),
        birth_month: birth_part("month").and_then(|m| u32::try_from(m).ok()),
        birth_year: birth_part("year").and_then(|y| i32::try_from(y).ok()),
        address: v.get("address").map(address_line).filter(|a| !a.is_empty()),
    })
}

/// The address object's parts in the usual order, on one line.
fn address_line(a: &Value) -> String {
    [
        "care_of",
        "po_box",
        "premises",
        "address_line_1",
        "address_line_2",
        "locality",
        "region",
        "postal_code",
        "country",
    ]
    .iter()
    .filter_map(|k| a.get(*k).and_then(Value::as_str))
    .map(str::trim)
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_officer_with_every_field_and_a_page_that_ends() {
        let list = OfficerList {
            items: vec![
                json!({
                    "name": "HOLLOWAY, Amelia", "officer_role": "director", "appointed_on": "2019-04-01",
                    "nationality": "British", "occupation": "Director", "country_of_residence": "England",
                    "date_of_birth": {"month": 3, "year": 1980},
                    "address": {"premises": "12", "address_line_1": "Mill Road", "locality": "Leeds", "postal_code": "LS1 1AB"}
                }),
                json!({"no_name": true}),
            ],
            total_results: Some(2),
        };
        let page = page_of(list, 0);
        assert_eq!(page.next, None);
        assert_eq!(page.officers.len(), 1);
        let o = &page.officers[0];
        assert_eq!((o.birth_month, o.birth_year), (Some(3), Some(1980)));
        assert_eq!(o.address.as_deref(), Some("12, Mill Road, Leeds, LS1 1AB"));
        let more = page_of(OfficerList { items: vec![json!({"name": "A"})], total_results: Some(5) }, 0);
        assert_eq!(more.next, Some(1));
        let hostile = page_of(OfficerList { items: Vec::new(), total_results: Some(1_000_000) }, 0);
        assert_eq!(hostile.next, None, "an empty page ends the paging whatever the total says");
    }

    #[test]
    fn both_spellings_of_the_remaining_count_are_read() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-ratelimit-remaining", "7".parse().unwrap());
        assert_eq!(server_limit(&h, 200).remaining, Some(7));
        h.insert("x-ratelimit-remain", "3".parse().unwrap());
        assert_eq!(server_limit(&h, 200).remaining, Some(3));
        assert!(server_limit(&h, 403).over_limit);
    }
}
