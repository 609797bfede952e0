//! Invented company-profile events in the real `/companies` shape (docs/protocols.md §1.5).
//!
//! A population of a few hundred made-up companies lives through small
//! storylines: most events are plain changes, some companies enter the proposal
//! to strike off, some leave it again, some are struck off, and now and then a
//! duplicate, a deletion or an unknown resource kind turns up, as on the real
//! stream. Everything (names, numbers, addresses, etags) is invented.
//!
//! The JSON matches what the official backend writes: envelope keys in the order
//! `resource_kind, resource_uri, resource_id, data, event`, `data` keys sorted
//! alphabetically (Go map marshalling), and a zoneless UTC `published_at`. The
//! structs below declare their fields in that order on purpose: serde writes
//! struct fields in declaration order.

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use feedtop_proto::ch::{DISSOLVED, PROPOSAL};

/// How the demo server generates live events.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Average rate of new events.
    pub events_per_sec: f64,
    /// Fixed seed for a reproducible run; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self { events_per_sec: 1.0, seed: None }
    }
}

/// Companies alive in the generator at any time.
const POPULATION: usize = 300;
/// Mid-2025 `/companies` offsets are near here (fixtures/README.md).
const FIRST_TIMEPOINT: i64 = 82_417_300;

const FIRST_WORDS: &[&str] = &[
    "NORTHGATE",
    "BRIGHTWELL",
    "KESTREL",
    "GLENCAIRN",
    "PEAKSIDE",
    "ORCHARD",
    "MERIDIAN",
    "ASHCOMBE",
    "BLACKTHORN",
    "CALDER",
    "DERWENT",
    "ELMSTEAD",
    "FAIRHOLME",
    "GREYSTONE",
    "HOLLYBANK",
    "IRONBRIDGE",
    "JUNIPER",
    "KINGSMERE",
    "LANGDALE",
    "MILLBROOK",
    "NETHERBY",
    "OAKRIDGE",
    "PENROSE",
    "QUAYSIDE",
    "REDFERN",
    "SILVERDALE",
    "THORNBURY",
    "UPLAND",
    "VALEWOOD",
    "WESTBROOK",
    "WILLOWMERE",
    "YARROW",
    "AVONSIDE",
    "BRACKEN",
    "COPPERFIELD",
    "DUNMORE",
    "EASTLEIGH",
    "FERNHILL",
    "HARROWGATE",
    "MOORCROFT",
];
const MIDDLE_WORDS: &[&str] = &["VALE", "HOUSE", "PARK", "GREEN", "BRIDGE", "HILL", "CROSS", "LANE"];
const TRADE_WORDS: &[&str] = &[
    "JOINERY",
    "LOGISTICS",
    "DIGITAL",
    "CONSULTING",
    "PROPERTY",
    "HOLDINGS",
    "TRADING",
    "ELECTRICAL",
    "PLUMBING",
    "CARE SERVICES",
    "BUILDERS",
    "CATERING",
    "DESIGN",
    "ENGINEERING",
    "FLOORING",
    "LANDSCAPES",
    "MEDIA",
    "MOTORS",
    "RETAIL",
    "SOLUTIONS",
    "TECHNOLOGIES",
    "VENTURES",
    "ESTATES",
    "TRANSPORT",
    "CLEANING",
    "INVESTMENTS",
    "HOME SERVICES",
    "TILING",
];
const SURNAMES: &[&str] = &[
    "HARTLEY", "PRICE", "ASHWORTH", "BENNETT", "CARTER", "DAWSON", "ELLIS", "FLETCHER", "GRAHAM", "HUGHES", "JENKINS",
    "KNIGHT", "LAWSON", "MORGAN", "NASH", "OWEN", "PATEL", "REID", "SHAW", "TURNER", "WARD", "YOUNG",
];
const STREETS: &[&str] = &[
    "Station Road",
    "High Street",
    "Church Lane",
    "Mill Lane",
    "Victoria Street",
    "Park Avenue",
    "King Street",
    "Queen Street",
    "Market Place",
    "Bridge Street",
    "Castle Street",
    "Main Street",
    "Albert Road",
    "Chapel Lane",
    "Commercial Road",
    "Orchard Way",
];
const SECOND_LINES: &[&str] =
    &["Kirkgate", "Covent Garden", "Brackmills", "Enterprise Way", "Riverside", "Business Park"];
const SIC_CODES: &[&str] = &[
    "62020", "43330", "16230", "49410", "70229", "47190", "81210", "56101", "68209", "41201", "96090", "74909",
    "82990", "86900", "62012", "10710", "43210", "45112",
];
const ACCOUNT_TYPES: &[&str] = &["micro-entity", "total-exemption-full", "dormant", "small", "unaudited-abridged"];
/// Letters used in the inward half of a postcode (Royal Mail leaves out CIKMOV).
const POSTCODE_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

/// A town: locality, postcode district, region, country.
type Town = (&'static str, &'static str, Option<&'static str>, &'static str);

const ENGLAND_WALES: &[Town] = &[
    ("Leeds", "LS1", Some("West Yorkshire"), "England"),
    ("Wakefield", "WF1", Some("West Yorkshire"), "England"),
    ("Swindon", "SN1", Some("Wiltshire"), "England"),
    ("Shrewsbury", "SY1", Some("Shropshire"), "England"),
    ("Northampton", "NN4", None, "England"),
    ("Guildford", "GU1", Some("Surrey"), "England"),
    ("London", "WC2H", None, "England"),
    ("London", "EC1V", None, "England"),
    ("Manchester", "M4", None, "England"),
    ("Bristol", "BS1", None, "England"),
    ("Norwich", "NR2", Some("Norfolk"), "England"),
    ("Evesham", "WR11", Some("Worcestershire"), "England"),
    ("York", "YO1", Some("North Yorkshire"), "England"),
    ("Exeter", "EX4", Some("Devon"), "England"),
    ("Sheffield", "S1", Some("South Yorkshire"), "England"),
    ("Birmingham", "B3", None, "England"),
    ("Cardiff", "CF10", None, "Wales"),
    ("Swansea", "SA1", None, "Wales"),
];
const SCOTLAND: &[Town] = &[
    ("Glasgow", "G2", None, "Scotland"),
    ("Edinburgh", "EH2", None, "Scotland"),
    ("Aberdeen", "AB11", None, "Scotland"),
    ("Stirling", "FK8", None, "Scotland"),
    ("Dundee", "DD1", None, "Scotland"),
    ("Inverness", "IV1", None, "Scotland"),
];
const NORTHERN_IRELAND: &[Town] = &[
    ("Belfast", "BT1", None, "Northern Ireland"),
    ("Newry", "BT34", Some("County Down"), "Northern Ireland"),
    ("Newcastle", "BT33", Some("County Down"), "Northern Ireland"),
    ("Lisburn", "BT28", Some("County Antrim"), "Northern Ireland"),
];

/// Which register a company is on; decides its number form and jurisdiction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Register {
    EnglandWales,
    Scotland,
    NorthernIreland,
    LlpEnglandWales,
    LlpScotland,
}

impl Register {
    fn prefix(self) -> &'static str {
        match self {
            Register::EnglandWales => "",
            Register::Scotland => "SC",
            Register::NorthernIreland => "NI",
            Register::LlpEnglandWales => "OC",
            Register::LlpScotland => "SO",
        }
    }

    fn is_llp(self) -> bool {
        matches!(self, Register::LlpEnglandWales | Register::LlpScotland)
    }

    fn jurisdiction(self) -> &'static str {
        match self {
            Register::EnglandWales | Register::LlpEnglandWales => "england-wales",
            Register::Scotland | Register::LlpScotland => "scotland",
            Register::NorthernIreland => "northern-ireland",
        }
    }

    fn towns(self) -> &'static [Town] {
        match self {
            Register::EnglandWales | Register::LlpEnglandWales => ENGLAND_WALES,
            Register::Scotland | Register::LlpScotland => SCOTLAND,
            Register::NorthernIreland => NORTHERN_IRELAND,
        }
    }

    /// Approximate serial numbers issued on 2000-01-01 and on 2025-06-10, so a
    /// company's number roughly matches its age, as on the real register.
    fn serials(self) -> (f64, f64) {
        match self {
            Register::EnglandWales => (3_900_000.0, 16_500_000.0),
            Register::Scotland => (200_000.0, 850_000.0),
            Register::NorthernIreland => (560_000.0, 690_000.0),
            Register::LlpEnglandWales => (300_000.0, 450_000.0),
            Register::LlpScotland => (300_000.0, 306_000.0),
        }
    }

    fn pick(rng: &mut StdRng) -> Register {
        match rng.random_range(0..100) {
            0..72 => Register::EnglandWales,
            72..82 => Register::Scotland,
            82..86 => Register::NorthernIreland,
            86..96 => Register::LlpEnglandWales,
            _ => Register::LlpScotland,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Active,
    Proposal,
    Liquidation,
    Dissolved,
}

#[derive(Debug, Clone, Serialize)]
struct Address {
    address_line_1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    address_line_2: Option<&'static str>,
    country: &'static str,
    locality: &'static str,
    postal_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    premises: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'static str>,
}

/// One invented company and where it is in its story.
#[derive(Debug, Clone)]
struct Company {
    number: String,
    name: String,
    register: Register,
    created: NaiveDate,
    ard_month: u32,
    address: Address,
    sic_codes: Vec<&'static str>,
    accounts_type: &'static str,
    has_charges: bool,
    status: Status,
    /// Years of accounts and confirmation statements not filed (compulsory
    /// strike-off cases are behind with both).
    years_behind: u32,
    etag: String,
    ceased: Option<NaiveDate>,
    /// Whether an event for it has gone out: only those can be duplicated,
    /// withdrawn or deleted in a way a client can notice.
    emitted: bool,
}

/// What the next event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Story {
    Plain,
    Enter,
    Withdraw,
    StrikeOff,
    Duplicate,
    Incorporate,
    Delete,
    Unknown,
}

/// Generates one event line at a time from an evolving population.
pub struct CompanyGen {
    rng: StdRng,
    next_timepoint: i64,
    companies: Vec<Company>,
    numbers: HashSet<String>,
    names: HashSet<String>,
    /// Companies removed (struck off, deleted) and not yet replaced by a new
    /// incorporation: keeps the population steady.
    owed_incorporations: usize,
    /// The company of the last profile event, for back-to-back duplicates.
    last_company: Option<String>,
}

impl CompanyGen {
    pub fn new(seed: Option<u64>) -> Self {
        let mut rng = match seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        let next_timepoint = FIRST_TIMEPOINT + rng.random_range(0..50);
        Self {
            rng,
            next_timepoint,
            companies: Vec::new(),
            numbers: HashSet::new(),
            names: HashSet::new(),
            owed_incorporations: 0,
            last_company: None,
        }
    }

    pub fn from_config(config: &GeneratorConfig) -> Self {
        Self::new(config.seed)
    }

    /// Makes the next timepoint greater than `timepoint`, so generated events
    /// continue a backlog instead of colliding with it.
    pub fn resume_after(&mut self, timepoint: i64) {
        self.next_timepoint = self.next_timepoint.max(timepoint.saturating_add(1));
    }

    /// The timepoint the next event will carry.
    pub fn next_timepoint(&self) -> i64 {
        self.next_timepoint
    }

    /// `count` events published one `spacing` apart and ending at `until`: a
    /// backlog for the demo, so the panes have history from the first frame.
    pub fn history(&mut self, count: usize, until: DateTime<Utc>, spacing: TimeDelta) -> Vec<String> {
        (0..count)
            .map(|i| {
                let back = spacing * i32::try_from(count - i - 1).unwrap_or(i32::MAX);
                self.next_event(until - back)
            })
            .collect()
    }

    /// One compact JSON line (no newline) published at `now`.
    pub fn next_event(&mut self, now: DateTime<Utc>) -> String {
        let today = now.date_naive();
        if self.companies.is_empty() {
            self.populate(today);
        }
        let story = self.pick_story();
        let timepoint = self.take_timepoint();
        match story {
            Story::Unknown => self.unknown_kind_event(timepoint, now),
            Story::Duplicate => self.duplicate_event(timepoint, now),
            Story::Delete => self.delete_event(timepoint, now),
            _ => self.change_event(story, timepoint, now),
        }
    }

    fn populate(&mut self, today: NaiveDate) {
        while self.companies.len() < POPULATION {
            let days_old = self.rng.random::<f64>().powi(2) * 7_300.0 + 60.0;
            let created = today - TimeDelta::days(days_old as i64);
            let company = self.invent_company(created);
            self.companies.push(company);
        }
    }

    fn take_timepoint(&mut self) -> i64 {
        let timepoint = self.next_timepoint;
        // Real offsets are not contiguous on one stream: leave small gaps.
        let gap = if self.rng.random_bool(0.15) { self.rng.random_range(1..=3) } else { 0 };
        self.next_timepoint += 1 + gap;
        timepoint
    }

    /// About 10 % of events are strike-off transitions (entries 5 %, exits 5 %).
    fn pick_story(&mut self) -> Story {
        let r: f64 = self.rng.random();
        let story = match r {
            r if r < 0.050 => Story::Enter,
            r if r < 0.075 => Story::Withdraw,
            r if r < 0.100 => Story::StrikeOff,
            r if r < 0.130 => Story::Duplicate,
            r if r < 0.140 => Story::Incorporate,
            r if r < 0.145 => Story::Delete,
            r if r < 0.150 => Story::Unknown,
            _ => Story::Plain,
        };
        self.feasible(story)
    }

    /// Falls back to a story that can happen with the population as it is.
    fn feasible(&mut self, story: Story) -> Story {
        let any_in_proposal = self.companies.iter().any(|c| c.status == Status::Proposal);
        match story {
            Story::Withdraw | Story::StrikeOff if !any_in_proposal => Story::Enter,
            Story::Duplicate if self.last_company.is_none() => Story::Plain,
            Story::Plain if self.owed_incorporations > 0 => Story::Incorporate,
            other => other,
        }
    }

    /// A `changed` profile event for one of the storylines that alter a company.
    fn change_event(&mut self, story: Story, timepoint: i64, now: DateTime<Utc>) -> String {
        let today = now.date_naive();
        let index = match story {
            Story::Incorporate => self.incorporate(today),
            Story::Enter => self.enter_proposal(),
            Story::Withdraw => self.withdraw(),
            Story::StrikeOff => self.strike_off(today),
            _ => self.plain_change(),
        };
        let fields = self.fields_changed(story);
        let line = self.profile_line(index, "changed", fields, timepoint, now);
        if self.companies[index].status == Status::Dissolved {
            self.remove(index);
        }
        line
    }

    /// `event.fields_changed` is optional and usually absent: add it to a few
    /// status changes so clients meet it.
    fn fields_changed(&mut self, story: Story) -> Option<Vec<&'static str>> {
        let status_change = matches!(story, Story::Enter | Story::Withdraw | Story::StrikeOff);
        (status_change && self.rng.random_bool(0.2)).then(|| match story {
            Story::StrikeOff => vec!["company_status", "company_status_detail", "date_of_cessation"],
            _ => vec!["company_status_detail"],
        })
    }

    fn random_index(&mut self, wanted: impl Fn(&Company) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.companies.len()).filter(|&i| wanted(&self.companies[i])).collect();
        candidates.choose(&mut self.rng).copied()
    }

    fn incorporate(&mut self, today: NaiveDate) -> usize {
        self.owed_incorporations = self.owed_incorporations.saturating_sub(1);
        let company = self.invent_company(today);
        self.companies.push(company);
        self.companies.len() - 1
    }

    /// Compulsory cases (accounts and confirmation statement overdue) are the
    /// common kind; the rest are voluntary (DS01) with filings up to date.
    fn enter_proposal(&mut self) -> usize {
        let Some(i) = self.random_index(|c| c.status == Status::Active) else {
            return self.plain_change();
        };
        let compulsory = self.rng.random_bool(0.7);
        let c = &mut self.companies[i];
        c.status = Status::Proposal;
        if compulsory {
            c.years_behind = 1;
        }
        self.new_etag(i);
        i
    }

    /// Leaving the proposal: usually the overdue accounts were filed; otherwise
    /// an objection or a suspension (still behind with filings).
    fn withdraw(&mut self) -> usize {
        let Some(i) = self.random_index(|c| c.status == Status::Proposal) else {
            return self.enter_proposal();
        };
        let filed = self.rng.random_bool(0.6);
        let c = &mut self.companies[i];
        c.status = Status::Active;
        if filed {
            c.years_behind = 0;
        }
        self.new_etag(i);
        i
    }

    fn strike_off(&mut self, today: NaiveDate) -> usize {
        let Some(i) = self.random_index(|c| c.status == Status::Proposal) else {
            return self.enter_proposal();
        };
        let c = &mut self.companies[i];
        c.status = Status::Dissolved;
        c.ceased = Some(today);
        self.new_etag(i);
        i
    }

    /// Most events change little or nothing that feedtop looks at.
    fn plain_change(&mut self) -> usize {
        let i = self.rng.random_range(0..self.companies.len());
        match self.rng.random_range(0..100) {
            0..40 => {} // no visible change besides the etag
            40..65 if self.companies[i].status == Status::Active => self.file_accounts(i),
            40..80 => self.companies[i].address = self.invent_address(self.companies[i].register),
            80..95 => self.companies[i].has_charges = true,
            95..99 => self.companies[i].accounts_type = self.pick(ACCOUNT_TYPES),
            _ if self.companies[i].status == Status::Active => self.companies[i].status = Status::Liquidation,
            _ => {}
        }
        self.new_etag(i);
        i
    }

    fn file_accounts(&mut self, i: usize) {
        let kind = self.pick(ACCOUNT_TYPES);
        let c = &mut self.companies[i];
        c.years_behind = 0;
        c.accounts_type = kind;
    }

    /// Re-sends a company's current profile with the same etag: the real stream
    /// does this often, and a client must not count it as a change.
    fn duplicate_event(&mut self, timepoint: i64, now: DateTime<Utc>) -> String {
        let last = self.last_company.clone();
        let index = last.and_then(|n| self.companies.iter().position(|c| c.number == n));
        let index = index.unwrap_or_else(|| self.plain_change());
        self.profile_line(index, "changed", None, timepoint, now)
    }

    /// A rare `deleted` event carrying the last known profile.
    fn delete_event(&mut self, timepoint: i64, now: DateTime<Utc>) -> String {
        let index = self.random_index(|c| c.emitted && c.status == Status::Active);
        let index = index.unwrap_or_else(|| self.plain_change());
        let line = self.profile_line(index, "deleted", None, timepoint, now);
        self.remove(index);
        line
    }

    fn remove(&mut self, index: usize) {
        let gone = self.companies.swap_remove(index);
        self.numbers.remove(&gone.number);
        self.names.remove(&gone.name);
        self.owed_incorporations += 1;
        if self.last_company.as_deref() == Some(gone.number.as_str()) {
            self.last_company = None;
        }
    }

    fn new_etag(&mut self, index: usize) {
        self.companies[index].etag = self.etag();
    }

    fn etag(&mut self) -> String {
        (0..20).map(|_| format!("{:02x}", self.rng.random::<u8>())).collect()
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        *items.choose(&mut self.rng).expect("word lists are not empty")
    }

    fn profile_line(
        &mut self,
        index: usize,
        kind: &str,
        fields_changed: Option<Vec<&'static str>>,
        timepoint: i64,
        now: DateTime<Utc>,
    ) -> String {
        let company = &mut self.companies[index];
        company.emitted = true;
        let company = &self.companies[index];
        let data = profile(company, now.date_naive());
        let event = EventMeta { fields_changed, timepoint, published_at: published_at(now), kind };
        let line = envelope_json("company-profile", &company.number, &data, event);
        self.last_company = Some(company.number.clone());
        line
    }

    /// A resource kind this version of feedtop does not know: its timepoint
    /// still advances the client's resume point.
    fn unknown_kind_event(&mut self, timepoint: i64, now: DateTime<Utc>) -> String {
        let index = self.rng.random_range(0..self.companies.len());
        let data = OfficerSummary {
            active_count: self.rng.random_range(1..5),
            etag: self.etag(),
            kind: "officer-summary",
            links: SelfLink { self_link: format!("/company/{}/officers", self.companies[index].number) },
            resigned_count: self.rng.random_range(0..3),
        };
        let event = EventMeta { fields_changed: None, timepoint, published_at: published_at(now), kind: "changed" };
        envelope_json("company-officer-summary", &self.companies[index].number, &data, event)
    }

    fn invent_company(&mut self, created: NaiveDate) -> Company {
        let register = Register::pick(&mut self.rng);
        let number = self.invent_number(register, created);
        let name = self.invent_name(register);
        let address = self.invent_address(register);
        let sic_codes = if register.is_llp() { Vec::new() } else { self.invent_sic_codes() };
        Company {
            number,
            name,
            register,
            created,
            ard_month: created.month(),
            address,
            sic_codes,
            accounts_type: self.pick(ACCOUNT_TYPES),
            has_charges: self.rng.random_bool(0.15),
            status: Status::Active,
            years_behind: 0,
            etag: self.etag(),
            ceased: None,
            emitted: false,
        }
    }

    /// 8 digits in England and Wales, otherwise a two-letter prefix and 6
    /// digits; the serial follows the incorporation date.
    fn invent_number(&mut self, register: Register, created: NaiveDate) -> String {
        let (at_2000, at_2025) = register.serials();
        let start = NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date");
        let span = 9_292.0; // days from 2000-01-01 to 2025-06-10
        let days = (created - start).num_days() as f64;
        let base = at_2000 + (at_2025 - at_2000) * days / span;
        let max: i64 = if register.prefix().is_empty() { 99_999_999 } else { 999_999 };
        // Keep the whole ±5,000 window inside the register's range: dates past
        // 2025 extrapolate beyond it, and a window clamped onto one number
        // made this loop spin for ever once that number was taken (a demo
        // running for days hung here; found by the soak benchmark).
        let centre = (base as i64).clamp(5_001, max - 5_000);
        for attempt in 0i64.. {
            // A window crowded by a long run widens step by step,
            // so a long run always finds a free one.
            let spread = (5_000 * (1 + attempt / 50)).min(max / 2);
            let serial = (centre + self.rng.random_range(-spread..spread)).clamp(1, max);
            let number = match register.prefix() {
                "" => format!("{serial:08}"),
                prefix => format!("{prefix}{serial:06}"),
            };
            if self.numbers.insert(number.clone()) {
                return number;
            }
        }
        unreachable!("the loop only ends by returning")
    }

    fn invent_name(&mut self, register: Register) -> String {
        for attempt in 0.. {
            let mut name = if register.is_llp() && self.rng.random_bool(0.5) {
                format!("{} & {}", self.pick(SURNAMES), self.pick(SURNAMES))
            } else {
                self.trade_name()
            };
            if attempt > 20 {
                // Word combinations ran out of luck: real registers have "… 2 LTD" too.
                name.push_str(&format!(" {attempt}"));
            }
            let suffix = match register.is_llp() {
                true => "LLP",
                false if self.rng.random_bool(0.6) => "LTD",
                false => "LIMITED",
            };
            let name = format!("{name} {suffix}");
            if self.names.insert(name.clone()) {
                return name;
            }
        }
        unreachable!("the loop only ends by returning")
    }

    fn trade_name(&mut self) -> String {
        let first = self.pick(FIRST_WORDS);
        let trade = self.pick(TRADE_WORDS);
        if self.rng.random_bool(0.25) {
            format!("{first} {} {trade}", self.pick(MIDDLE_WORDS))
        } else {
            format!("{first} {trade}")
        }
    }

    fn invent_address(&mut self, register: Register) -> Address {
        let (locality, district, region, country) = self.pick(register.towns());
        let premises = match self.rng.random_range(0..10) {
            0 => Some(format!("Unit {}", self.rng.random_range(1..30))),
            1 => Some(format!("Suite {}{}", self.rng.random_range(1..9), self.pick(&['A', 'B']))),
            2 => Some(format!("Office {}", self.rng.random_range(1..12))),
            _ => None,
        };
        let address_line_2 = self.rng.random_bool(0.3).then(|| self.pick(SECOND_LINES));
        Address {
            address_line_1: format!("{} {}", self.rng.random_range(1..120), self.pick(STREETS)),
            address_line_2,
            country,
            locality,
            postal_code: self.postcode(district),
            premises,
            region,
        }
    }

    fn postcode(&mut self, district: &str) -> String {
        let a = self.pick(POSTCODE_LETTERS) as char;
        let b = self.pick(POSTCODE_LETTERS) as char;
        format!("{district} {}{a}{b}", self.rng.random_range(0..10))
    }

    fn invent_sic_codes(&mut self) -> Vec<&'static str> {
        let mut codes = vec![self.pick(SIC_CODES)];
        if self.rng.random_bool(0.3) {
            let second = self.pick(SIC_CODES);
            if second != codes[0] {
                codes.push(second);
            }
        }
        codes.sort_unstable();
        codes
    }
}

fn published_at(now: DateTime<Utc>) -> String {
    now.format("%Y-%m-%dT%H:%M:%S").to_string()
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    resource_kind: &'a str,
    resource_uri: String,
    resource_id: &'a str,
    data: &'a D,
    event: EventMeta<'a>,
}

#[derive(Serialize)]
struct EventMeta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    fields_changed: Option<Vec<&'static str>>,
    timepoint: i64,
    published_at: String,
    #[serde(rename = "type")]
    kind: &'a str,
}

fn envelope_json<D: Serialize>(kind: &str, number: &str, data: &D, event: EventMeta<'_>) -> String {
    let envelope =
        Envelope { resource_kind: kind, resource_uri: format!("/company/{number}"), resource_id: number, data, event };
    serde_json::to_string(&envelope).expect("plain structs always serialise")
}

#[derive(Serialize)]
struct OfficerSummary {
    active_count: u32,
    etag: String,
    kind: &'static str,
    links: SelfLink,
    resigned_count: u32,
}

#[derive(Serialize)]
struct SelfLink {
    #[serde(rename = "self")]
    self_link: String,
}

// The profile, its fields in alphabetical order (see the module comment).
#[derive(Serialize)]
struct Profile<'a> {
    accounts: Accounts,
    can_file: bool,
    company_name: &'a str,
    company_number: &'a str,
    company_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    company_status_detail: Option<&'static str>,
    confirmation_statement: Confirmation,
    #[serde(skip_serializing_if = "Option::is_none")]
    date_of_cessation: Option<NaiveDate>,
    date_of_creation: NaiveDate,
    etag: &'a str,
    has_charges: bool,
    has_insolvency_history: bool,
    has_super_secure_pscs: bool,
    jurisdiction: &'static str,
    links: Links,
    registered_office_address: &'a Address,
    registered_office_is_in_dispute: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sic_codes: Option<&'a [&'static str]>,
    #[serde(rename = "type")]
    kind: &'static str,
    undeliverable_registered_office_address: bool,
}

#[derive(Serialize)]
struct Accounts {
    accounting_reference_date: ReferenceDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_accounts: Option<LastAccounts>,
    next_accounts: NextAccounts,
    next_due: NaiveDate,
    next_made_up_to: NaiveDate,
    overdue: bool,
}

#[derive(Serialize)]
struct ReferenceDate {
    day: String,
    month: String,
}

#[derive(Serialize)]
struct LastAccounts {
    made_up_to: NaiveDate,
    period_end_on: NaiveDate,
    period_start_on: NaiveDate,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct NextAccounts {
    due_on: NaiveDate,
    overdue: bool,
    period_end_on: NaiveDate,
    period_start_on: NaiveDate,
}

#[derive(Serialize)]
struct Confirmation {
    #[serde(skip_serializing_if = "Option::is_none")]
    last_made_up_to: Option<NaiveDate>,
    next_due: NaiveDate,
    next_made_up_to: NaiveDate,
    overdue: bool,
}

#[derive(Serialize)]
struct Links {
    #[serde(skip_serializing_if = "Option::is_none")]
    charges: Option<String>,
    filing_history: String,
    officers: String,
    persons_with_significant_control: String,
    #[serde(rename = "self")]
    self_link: String,
}

fn profile(c: &Company, today: NaiveDate) -> Profile<'_> {
    let (status, detail) = match c.status {
        Status::Active => ("active", None),
        Status::Proposal => ("active", Some(PROPOSAL)),
        Status::Liquidation => ("liquidation", None),
        Status::Dissolved => (DISSOLVED, None),
    };
    Profile {
        accounts: accounts(c, today),
        can_file: c.status != Status::Dissolved,
        company_name: &c.name,
        company_number: &c.number,
        company_status: status,
        company_status_detail: detail,
        confirmation_statement: confirmation(c, today),
        date_of_cessation: c.ceased,
        date_of_creation: c.created,
        etag: &c.etag,
        has_charges: c.has_charges,
        has_insolvency_history: c.status == Status::Liquidation,
        has_super_secure_pscs: false,
        jurisdiction: c.register.jurisdiction(),
        links: links(c),
        registered_office_address: &c.address,
        registered_office_is_in_dispute: false,
        sic_codes: (!c.sic_codes.is_empty()).then_some(c.sic_codes.as_slice()),
        kind: if c.register.is_llp() { "llp" } else { "ltd" },
        undeliverable_registered_office_address: false,
    }
}

fn links(c: &Company) -> Links {
    let base = format!("/company/{}", c.number);
    Links {
        charges: c.has_charges.then(|| format!("{base}/charges")),
        filing_history: format!("{base}/filing-history"),
        officers: format!("{base}/officers"),
        persons_with_significant_control: format!("{base}/persons-with-significant-control"),
        self_link: base,
    }
}

/// The last day of `month` in `year`: reference dates are month ends.
fn month_end(year: i32, month: u32) -> NaiveDate {
    let (y, m) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let first_of_next = NaiveDate::from_ymd_opt(y, m, 1).expect("month is 1..=12");
    first_of_next.pred_opt().expect("not the first day of time")
}

fn plus_months(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_add_months(Months::new(months)).unwrap_or(date)
}

/// Private companies file accounts 9 months after the period end. A company
/// that is up to date has filed the newest period whose deadline has passed;
/// one `years_behind` has not filed that many of them.
fn accounts(c: &Company, today: NaiveDate) -> Accounts {
    let first_end = month_end(c.created.year() + 1, c.ard_month);
    let mut filed_end = month_end(today.year(), c.ard_month);
    while plus_months(filed_end, 9) > today {
        filed_end = month_end(filed_end.year() - 1, c.ard_month);
    }
    let filed_end = month_end(filed_end.year() - c.years_behind as i32, c.ard_month);
    let filed_end = (filed_end >= first_end).then_some(filed_end);
    let next_end = filed_end.map_or(first_end, |e| month_end(e.year() + 1, c.ard_month));
    let next_start = filed_end.and_then(|e| e.succ_opt()).unwrap_or(c.created);
    let next_due = plus_months(next_end, 9);
    let overdue = next_due < today;
    Accounts {
        accounting_reference_date: ReferenceDate {
            day: format!("{:02}", first_end.day()),
            month: format!("{:02}", c.ard_month),
        },
        last_accounts: filed_end.map(|end| LastAccounts {
            made_up_to: end,
            period_end_on: end,
            period_start_on: previous_period_start(c, end, first_end),
            kind: c.accounts_type,
        }),
        next_accounts: NextAccounts { due_on: next_due, overdue, period_end_on: next_end, period_start_on: next_start },
        next_due,
        next_made_up_to: next_end,
        overdue,
    }
}

fn previous_period_start(c: &Company, end: NaiveDate, first_end: NaiveDate) -> NaiveDate {
    if end == first_end {
        return c.created;
    }
    month_end(end.year() - 1, c.ard_month).succ_opt().unwrap_or(c.created)
}

/// Confirmation statements are made up to the day before each anniversary of
/// incorporation and are due 14 days later.
fn confirmation(c: &Company, today: NaiveDate) -> Confirmation {
    let made_up_to = |years: u32| plus_months(c.created, 12 * years).pred_opt().unwrap_or(c.created);
    let mut done = 0;
    while made_up_to(done + 1) + TimeDelta::days(14) <= today {
        done += 1;
    }
    let done = done.saturating_sub(c.years_behind);
    let next = made_up_to(done + 1);
    let next_due = next + TimeDelta::days(14);
    Confirmation {
        last_made_up_to: (done > 0).then(|| made_up_to(done)),
        next_due,
        next_made_up_to: next,
        overdue: next_due < today,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fmt;

    use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde::Deserialize;

    use super::*;
    use feedtop_proto::ch::parse_event;
    use feedtop_proto::EventType;

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-06-10T08:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_crowded_number_window_widens_instead_of_spinning() {
        // 30,000 incorporations on one day: far more than the ±5,000 window
        // of a prefixed register holds (a soak run hung here before).
        let mut generator = CompanyGen::new(Some(9));
        let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        for _ in 0..30_000 {
            generator.invent_company(day);
        }
        assert!(generator.numbers.len() >= 30_000);
    }

    #[test]
    fn incorporations_long_after_2025_get_numbers_in_range() {
        // Before the fix, the second Scottish/NI/LLP company incorporated
        // after ~2030 looped for ever: every serial clamped to 999999.
        let mut generator = CompanyGen::new(Some(5));
        let later = NaiveDate::from_ymd_opt(2040, 1, 1).unwrap();
        for _ in 0..3_000 {
            let c = generator.invent_company(later);
            let digits = c.number.trim_start_matches(|ch: char| ch.is_ascii_alphabetic());
            assert!(c.number.len() == 8 && digits.chars().all(|d| d.is_ascii_digit()), "{}", c.number);
        }
    }

    fn generate(seed: u64, count: usize) -> Vec<(DateTime<Utc>, String)> {
        let mut gen = CompanyGen::new(Some(seed));
        (0..count)
            .map(|i| {
                let now = start() + TimeDelta::seconds(i as i64);
                (now, gen.next_event(now))
            })
            .collect()
    }

    /// Deserialises any JSON and fails if some object's keys are out of order.
    struct SortedKeys;

    impl<'de> Deserialize<'de> for SortedKeys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(SortedKeysVisitor)
        }
    }

    struct SortedKeysVisitor;

    impl<'de> Visitor<'de> for SortedKeysVisitor {
        type Value = SortedKeys;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<SortedKeys, E> {
            Ok(SortedKeys)
        }
        fn visit_i64<E>(self, _: i64) -> Result<SortedKeys, E> {
            Ok(SortedKeys)
        }
        fn visit_u64<E>(self, _: u64) -> Result<SortedKeys, E> {
            Ok(SortedKeys)
        }
        fn visit_f64<E>(self, _: f64) -> Result<SortedKeys, E> {
            Ok(SortedKeys)
        }
        fn visit_str<E>(self, _: &str) -> Result<SortedKeys, E> {
            Ok(SortedKeys)
        }
        fn visit_unit<E>(self) -> Result<SortedKeys, E> {
            Ok(SortedKeys)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SortedKeys, A::Error> {
            while seq.next_element::<SortedKeys>()?.is_some() {}
            Ok(SortedKeys)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SortedKeys, A::Error> {
            let mut previous: Option<String> = None;
            while let Some(key) = map.next_key::<String>()? {
                if let Some(prev) = &previous {
                    if *prev >= key {
                        return Err(de::Error::custom(format!("key {key:?} after {prev:?}")));
                    }
                }
                map.next_value::<SortedKeys>()?;
                previous = Some(key);
            }
            Ok(SortedKeys)
        }
    }

    /// The top-level keys of a JSON object, in the order written.
    struct KeyOrder(Vec<String>);

    impl<'de> Deserialize<'de> for KeyOrder {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(KeyOrderVisitor)
        }
    }

    struct KeyOrderVisitor;

    impl<'de> Visitor<'de> for KeyOrderVisitor {
        type Value = KeyOrder;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyOrder, A::Error> {
            let mut keys = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(key);
            }
            Ok(KeyOrder(keys))
        }
    }

    #[derive(Deserialize)]
    struct RawEnvelope<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }

    #[test]
    fn sorted_keys_check_can_fail() {
        assert!(serde_json::from_str::<SortedKeys>(r#"{"a":1,"b":{"c":[{"d":1,"e":2}]}}"#).is_ok());
        assert!(serde_json::from_str::<SortedKeys>(r#"{"a":1,"b":{"c":[{"e":1,"d":2}]}}"#).is_err());
    }

    #[test]
    fn two_thousand_events_parse_and_are_well_formed() {
        let events = generate(7, 2_000);
        let mut last_timepoint = i64::MIN;
        for (now, line) in &events {
            assert!(!line.contains('\n'), "one line per event");
            let ev = parse_event(line.clone().into_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(ev.timepoint > last_timepoint, "timepoints strictly increase");
            last_timepoint = ev.timepoint;
            assert_eq!(ev.published_at, Some(*now), "published_at is the generation time");
            let keys = serde_json::from_str::<KeyOrder>(line).unwrap().0;
            assert_eq!(keys, ["resource_kind", "resource_uri", "resource_id", "data", "event"]);
            let raw: RawEnvelope = serde_json::from_str(line).unwrap();
            if let Err(e) = serde_json::from_str::<SortedKeys>(raw.data.get()) {
                panic!("data keys not sorted ({e}): {line}");
            }
        }
        let first = parse_event(events[0].1.clone().into_bytes()).unwrap().timepoint;
        assert!((FIRST_TIMEPOINT..FIRST_TIMEPOINT + 100).contains(&first), "{first}");
    }

    #[test]
    fn rare_kinds_and_duplicates_occur() {
        let events = generate(3, 2_000);
        let (mut deleted, mut unknown, mut duplicates) = (0, 0, 0);
        let mut previous: Option<serde_json::Value> = None;
        for (_, line) in &events {
            let ev = parse_event(line.clone().into_bytes()).unwrap();
            deleted += usize::from(ev.event_type == EventType::Deleted);
            unknown += usize::from(!ev.is_company_profile());
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let data = value["data"].clone();
            if previous.as_ref() == Some(&data) && ev.is_company_profile() {
                duplicates += 1;
            }
            previous = Some(data);
        }
        assert!(deleted > 0 && unknown > 0 && duplicates > 0, "{deleted} {unknown} {duplicates}");
        assert!(deleted < 40 && unknown < 40, "deleted and unknown kinds stay rare");
    }

    #[test]
    fn struck_off_companies_are_dissolved_with_a_cessation_date() {
        let events = generate(5, 2_000);
        let mut seen = 0;
        for (now, line) in &events {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let data = &value["data"];
            if data["company_status"] == "dissolved" {
                seen += 1;
                assert_eq!(data["date_of_cessation"], now.date_naive().to_string());
                assert_eq!(data["can_file"], false);
                assert!(data.get("company_status_detail").is_none(), "{line}");
            }
            if data.get("company_status_detail").is_some() {
                assert_eq!(data["company_status"], "active", "the proposal only appears with active");
            }
        }
        assert!(seen > 0);
    }

    fn number_form_ok(number: &str) -> bool {
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        match number.get(..2) {
            Some("SC" | "NI" | "OC" | "SO") => digits(&number[2..], 6),
            _ => digits(number, 8),
        }
    }

    #[test]
    fn numbers_names_and_etags_look_real() {
        let events = generate(9, 2_000);
        let mut names: HashMap<String, String> = HashMap::new();
        for (_, line) in &events {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let number = value["resource_id"].as_str().unwrap().to_string();
            assert!(number_form_ok(&number), "{number}");
            assert_eq!(value["resource_uri"], format!("/company/{number}"));
            let etag = value["data"]["etag"].as_str().unwrap();
            assert!(etag.len() == 40 && etag.bytes().all(|b| b.is_ascii_hexdigit()), "{etag}");
            if value["resource_kind"] != "company-profile" {
                continue;
            }
            let name = value["data"]["company_name"].as_str().unwrap().to_string();
            assert!(name.ends_with(" LTD") || name.ends_with(" LIMITED") || name.ends_with(" LLP"), "{name}");
            let previous = names.entry(number.clone()).or_insert_with(|| name.clone());
            assert_eq!(*previous, name, "a company keeps its name");
        }
        assert!(names.len() > 200, "a population of a few hundred companies: {}", names.len());
        assert!(!number_form_ok("SC12345") && !number_form_ok("1234567"));
    }

    #[test]
    fn same_seed_same_events() {
        assert_eq!(generate(42, 200), generate(42, 200));
        assert_ne!(generate(42, 200), generate(43, 200));
    }

    #[test]
    fn resume_after_continues_past_a_backlog() {
        let mut gen = CompanyGen::new(Some(1));
        gen.resume_after(90_000_000);
        let ev = parse_event(gen.next_event(start()).into_bytes()).unwrap();
        assert_eq!(ev.timepoint, 90_000_001);
    }

    #[test]
    fn history_ends_at_until_in_order() {
        let mut gen = CompanyGen::new(Some(2));
        let lines = gen.history(10, start(), TimeDelta::seconds(30));
        let times: Vec<_> =
            lines.iter().map(|l| parse_event(l.clone().into_bytes()).unwrap().published_at.unwrap()).collect();
        assert_eq!(times.first(), Some(&(start() - TimeDelta::seconds(270))));
        assert_eq!(times.last(), Some(&start()));
    }

    #[test]
    fn accounts_dates_follow_the_filing_rules() {
        let mut gen = CompanyGen::new(Some(4));
        let mut c = gen.invent_company(NaiveDate::from_ymd_opt(2021, 5, 11).unwrap());
        let today = NaiveDate::from_ymd_opt(2025, 6, 10).unwrap();
        let a = accounts(&c, today);
        assert_eq!(a.last_accounts.as_ref().map(|l| l.made_up_to.to_string()).as_deref(), Some("2024-05-31"));
        assert_eq!(a.next_made_up_to.to_string(), "2025-05-31");
        assert_eq!(a.next_due.to_string(), "2026-02-28");
        assert!(!a.overdue);
        let cs = confirmation(&c, today);
        assert_eq!(cs.last_made_up_to.map(|d| d.to_string()).as_deref(), Some("2025-05-10"));
        assert_eq!(cs.next_due.to_string(), "2026-05-24");
        c.years_behind = 1;
        assert!(accounts(&c, today).overdue && confirmation(&c, today).overdue);
        let young = gen.invent_company(today);
        let a = accounts(&young, today);
        assert!(a.last_accounts.is_none());
        assert_eq!(a.next_made_up_to.to_string(), "2026-06-30");
        assert_eq!(confirmation(&young, today).next_made_up_to.to_string(), "2026-06-09");
    }
}
