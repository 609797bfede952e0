//! `[[alerts]]` tables: read as the file says them ([`AlertFile`], every
//! value with its place in the file), then checked into [`Rule`]s at start.
//! A bad rule is refused with its line and key, like every config error:
//! an alert rule that silently never fires is worse than none.
//!
//! ```toml
//! [[alerts]]
//! on = "strike-off"                 # entered / withdrawn / struck-off changes
//! changes = ["entered"]             # optional: all three when absent
//! companies = "watchlist.txt"       # optional: numbers, one a line; or name = "regex"
//! actions = ["bell", "flash"]
//!
//! [[alerts]]
//! on = "feed-down"                  # not live (or stalled) for longer than `after`
//! after = "2m"
//! actions = ["bell", "flash", "exec"]
//! exec = ["notify-send", "feedtop: {feed} down", "{detail}"]
//!
//! [[alerts]]
//! on = "quote-move"                 # |change %| over `within` at least `percent`
//! symbols = ["PKN", "CDR"]
//! percent = 3.0
//! within = "15m"
//! actions = ["flash"]
//! ```

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Actions, AlertKind};
use crate::bounds;
use crate::model::ChangeKind;

/// Rules in one file at most: each is evaluated on every quote or tick.
pub const MAX_RULES: usize = 64;
/// A `companies` file larger than this is not a watch list (10 MB is
/// about 900,000 company numbers, more than a fifth of the register).
pub const MAX_COMPANIES_FILE: u64 = 10 << 20;
/// A `name` pattern longer than this is not a name filter.
pub const MAX_PATTERN: usize = 1000;
/// The compiled pattern's size limit (regex's own default is 10 MB): a
/// pattern like `\w{1000}{1000}` is refused instead of taking the memory.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Symbols one quote-move rule watches at most (each keeps a sample ring).
pub const MAX_SYMBOLS: usize = 1000;
/// Arguments of an `exec` program at most, and bytes of each.
pub const MAX_ARGS: usize = 64;
pub const MAX_ARG_LEN: usize = 4096;

/// The words `actions` takes.
const ACTIONS: &[&str] = &["bell", "flash", "exec"];
/// The placeholders an `exec` argument may use.
pub const PLACEHOLDERS: &[&str] = &["feed", "detail", "company", "symbol", "kind", "time"];

/// One `[[alerts]]` table as written. Which keys go with which `on` is
/// checked after reading ([`Rules::check`]).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertFile {
    pub on: Spanned<String>,
    pub changes: Option<Spanned<Vec<String>>>,
    pub companies: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub after: Option<Spanned<String>>,
    pub symbols: Option<Spanned<Vec<String>>>,
    pub percent: Option<Spanned<f64>>,
    pub within: Option<Spanned<String>>,
    pub actions: Spanned<Vec<String>>,
    pub exec: Option<Spanned<Vec<String>>>,
}

/// Which companies a strike-off rule is about.
#[derive(Debug, Clone)]
pub enum Companies {
    All,
    /// Company numbers (upper case, trimmed) from the file named.
    Numbers(HashSet<String>),
    Name(regex::Regex),
}

/// What makes a rule fire.
#[derive(Debug, Clone)]
pub enum Trigger {
    StrikeOff { changes: Vec<ChangeKind>, companies: Companies },
    FeedDown { after: Duration },
    QuoteMove { symbols: Vec<String>, percent: f64, within: Duration },
}

impl Trigger {
    pub fn kind(&self) -> AlertKind {
        match self {
            Trigger::StrikeOff { .. } => AlertKind::StrikeOff,
            Trigger::FeedDown { .. } => AlertKind::FeedDown,
            Trigger::QuoteMove { .. } => AlertKind::QuoteMove,
        }
    }
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its place among the `[[alerts]]` tables, from 1 (as logged and stored).
    pub number: usize,
    pub trigger: Trigger,
    pub actions: Actions,
    /// The program and its arguments, with placeholders, when `actions` has `exec`.
    pub exec: Vec<String>,
}

/// The checked rules of a config file (none by default).
#[derive(Debug, Clone, Default)]
pub struct Rules(pub Vec<Rule>);

/// Equal when the same rules were written (regexes have no equality of
/// their own): lets the config compare as a whole in tests.
impl PartialEq for Rules {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}

/// A rule refused: where (a span of the file), which key, why.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    /// The `[[alerts]]` table's number, from 1.
    pub number: usize,
    pub key: &'static str,
    pub span: Range<usize>,
    pub why: String,
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same rules with the `exec` action off, and how many had it: a
    /// replayed recording raises its alerts (Log, list, bell, flash) but
    /// runs no programs, which could reach the network or page someone.
    pub fn without_exec(mut self) -> (Self, usize) {
        let mut had = 0;
        for rule in self.0.iter_mut().filter(|r| r.actions.exec) {
            rule.actions.exec = false;
            had += 1;
        }
        (self, had)
    }

    /// Checks every table; relative `companies` paths are read from `base`
    /// (the config file's directory).
    pub fn check(files: &[AlertFile], base: &Path) -> Result<Self, RuleError> {
        let mut rules = Vec::new();
        for (i, file) in files.iter().enumerate() {
            let number = i + 1;
            if number > MAX_RULES {
                return Err(RuleError {
                    number,
                    key: "on",
                    span: file.on.span(),
                    why: format!("more than {MAX_RULES} [[alerts]] rules; combine them"),
                });
            }
            rules.push(check_one(number, file, base)?);
        }
        Ok(Self(rules))
    }
}

fn check_one(number: usize, f: &AlertFile, base: &Path) -> Result<Rule, RuleError> {
    let fail = |key: &'static str, span: Range<usize>, why: String| RuleError { number, key, span, why };
    let Some(kind) = AlertKind::parse(f.on.get_ref()) else {
        return Err(fail(
            "on",
            f.on.span(),
            format!("unknown {:?}: use \"strike-off\", \"feed-down\" or \"quote-move\"", f.on.get_ref()),
        ));
    };
    // Every key given must mean something to this kind.
    type Given<'a> = (&'static str, Option<Range<usize>>, &'a [AlertKind]);
    let given: [Given; 7] = [
        ("changes", f.changes.as_ref().map(Spanned::span), &[AlertKind::StrikeOff]),
        ("companies", f.companies.as_ref().map(Spanned::span), &[AlertKind::StrikeOff]),
        ("name", f.name.as_ref().map(Spanned::span), &[AlertKind::StrikeOff]),
        ("after", f.after.as_ref().map(Spanned::span), &[AlertKind::FeedDown]),
        ("symbols", f.symbols.as_ref().map(Spanned::span), &[AlertKind::QuoteMove]),
        ("percent", f.percent.as_ref().map(Spanned::span), &[AlertKind::QuoteMove]),
        ("within", f.within.as_ref().map(Spanned::span), &[AlertKind::QuoteMove]),
    ];
    for (key, span, kinds) in given {
        if let Some(span) = span.filter(|_| !kinds.contains(&kind)) {
            return Err(fail(key, span, format!("does not apply to on = \"{}\"", kind.as_str())));
        }
    }

    let mut actions = Actions::default();
    if f.actions.get_ref().is_empty() {
        return Err(fail("actions", f.actions.span(), "is empty: list at least one of bell, flash, exec".into()));
    }
    for word in f.actions.get_ref() {
        match word.as_str() {
            "bell" => actions.bell = true,
            "flash" => actions.flash = true,
            "exec" => actions.exec = true,
            other => {
                return Err(fail(
                    "actions",
                    f.actions.span(),
                    format!("unknown action {other:?}: use {}", ACTIONS.join(", ")),
                ))
            }
        }
    }
    let exec = match (&f.exec, actions.exec) {
        (Some(exec), true) => check_exec(exec.get_ref()).map_err(|why| fail("exec", exec.span(), why))?,
        (Some(exec), false) => {
            return Err(fail(
                "exec",
                exec.span(),
                "is set but actions does not list \"exec\": add it or remove exec".into(),
            ))
        }
        (None, true) => {
            return Err(fail(
                "actions",
                f.actions.span(),
                "lists \"exec\" without an exec = [\"program\", \"arg\", …] key".into(),
            ))
        }
        (None, false) => Vec::new(),
    };

    let duration = |key: &'static str, value: &Spanned<String>, range: &bounds::Bounds<Duration>| {
        let d = bounds::parse_duration(value.get_ref()).map_err(|e| fail(key, value.span(), e))?;
        range.check(d).map_err(|e| fail(key, value.span(), e.to_string()))
    };
    let missing = |key: &'static str, example: &str| {
        fail(key, f.on.span(), format!("on = \"{}\" needs {key} (e.g. {example})", kind.as_str()))
    };
    let trigger = match kind {
        AlertKind::StrikeOff => {
            let mut changes = Vec::new();
            if let Some(list) = &f.changes {
                for word in list.get_ref() {
                    let Some(change) = ChangeKind::parse(word) else {
                        return Err(fail(
                            "changes",
                            list.span(),
                            format!("unknown change {word:?}: use \"entered\", \"withdrawn\" or \"struck-off\""),
                        ));
                    };
                    if !changes.contains(&change) {
                        changes.push(change);
                    }
                }
                if changes.is_empty() {
                    return Err(fail("changes", list.span(), "is empty: leave it out to alert on every change".into()));
                }
            }
            let companies = match (&f.companies, &f.name) {
                (Some(_), Some(name)) => {
                    return Err(fail("name", name.span(), "and companies both given: use one of them".into()))
                }
                (Some(file), None) => Companies::Numbers(
                    read_companies(base, file.get_ref()).map_err(|e| fail("companies", file.span(), e))?,
                ),
                (None, Some(name)) => {
                    Companies::Name(compile(name.get_ref()).map_err(|e| fail("name", name.span(), e))?)
                }
                (None, None) => Companies::All,
            };
            Trigger::StrikeOff { changes, companies }
        }
        AlertKind::FeedDown => {
            let after = f.after.as_ref().ok_or_else(|| missing("after", "after = \"2m\""))?;
            Trigger::FeedDown { after: duration("after", after, &bounds::ALERT_AFTER)? }
        }
        AlertKind::QuoteMove => {
            let symbols = f.symbols.as_ref().ok_or_else(|| missing("symbols", "symbols = [\"PKN\"]"))?;
            let percent = f.percent.as_ref().ok_or_else(|| missing("percent", "percent = 3.0"))?;
            let within = f.within.as_ref().ok_or_else(|| missing("within", "within = \"15m\""))?;
            let list: Vec<String> = symbols.get_ref().iter().map(|s| s.trim().to_string()).collect();
            if list.is_empty() || list.len() > MAX_SYMBOLS || list.iter().any(|s| s.is_empty() || s.len() > 64) {
                return Err(fail(
                    "symbols",
                    symbols.span(),
                    format!("needs 1 to {MAX_SYMBOLS} symbols, each 1 to 64 characters"),
                ));
            }
            let pct = bounds::ALERT_PERCENT
                .check(*percent.get_ref())
                .map_err(|e| fail("percent", percent.span(), e.to_string()))?;
            Trigger::QuoteMove {
                symbols: list,
                percent: pct,
                within: duration("within", within, &bounds::ALERT_WITHIN)?,
            }
        }
    };
    Ok(Rule { number, trigger, actions, exec })
}

/// The program must be named, the placeholders known, the sizes sane.
fn check_exec(argv: &[String]) -> Result<Vec<String>, String> {
    let Some(program) = argv.first() else {
        return Err("is empty: give the program and its arguments, e.g. [\"notify-send\", \"{feed} down\"]".into());
    };
    if program.trim().is_empty() || program.contains('{') {
        return Err("the program (the first item) must be a plain name or path, without placeholders".into());
    }
    if argv.len() > MAX_ARGS || argv.iter().any(|a| a.len() > MAX_ARG_LEN || a.contains('\0')) {
        return Err(format!("takes at most {MAX_ARGS} items of at most {MAX_ARG_LEN} bytes, without NUL"));
    }
    for arg in argv {
        let mut rest = arg.as_str();
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else { break };
            let name = &after[..close];
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder {{{name}}}: use {}",
                    PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(" ")
                ));
            }
            rest = &after[close + 1..];
        }
    }
    Ok(argv.to_vec())
}

fn compile(pattern: &str) -> Result<regex::Regex, String> {
    if pattern.len() > MAX_PATTERN {
        return Err(format!("is longer than {MAX_PATTERN} characters"));
    }
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("is not a valid regular expression: {}", one_line(&e.to_string())))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Company numbers, one a line; blank lines and `#` comments skipped.
fn read_companies(base: &Path, name: &str) -> Result<HashSet<String>, String> {
    let path: PathBuf = base.join(name);
    let shown = path.display();
    let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if meta.len() > MAX_COMPANIES_FILE {
        return Err(format!("{shown} is {} bytes; the most a watch list may be is {MAX_COMPANIES_FILE}", meta.len()));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut numbers = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let number = line.split('#').next().unwrap_or("").trim();
        if number.is_empty() {
            continue;
        }
        if number.len() > 16 || !number.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("{shown} line {}: {number:?} is not a company number", i + 1));
        }
        numbers.insert(number.to_ascii_uppercase());
    }
    if numbers.is_empty() {
        return Err(format!("{shown} lists no company numbers"));
    }
    Ok(numbers)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_replay_runs_no_programs() {
        let rule = |exec| Rule {
            number: 1,
            trigger: Trigger::FeedDown { after: std::time::Duration::from_secs(60) },
            actions: Actions { bell: true, flash: false, exec },
            exec: if exec { vec!["true".into()] } else { Vec::new() },
        };
        let (rules, had) = Rules(vec![rule(true), rule(false)]).without_exec();
        assert_eq!(had, 1);
        assert!(rules.0.iter().all(|r| !r.actions.exec && r.actions.bell));
    }

    use super::*;

    #[derive(Deserialize)]
    struct File {
        alerts: Vec<AlertFile>,
    }

    /// The error for `text`, as `line N: key: why`.
    fn refused(text: &str, base: &Path) -> String {
        let file: File = toml::from_str(text).unwrap();
        let e = Rules::check(&file.alerts, base).unwrap_err();
        let line = text[..e.span.start].matches('\n').count() + 1;
        format!("line {line}: #{} {}: {}", e.number, e.key, e.why)
    }

    #[test]
    fn the_issues_three_rules_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("watchlist.txt"), "# mine\n01234567\nsc571653  # lower case\n\n").unwrap();
        let text = r#"
[[alerts]]
on = "strike-off"
changes = ["entered"]
companies = "watchlist.txt"
actions = ["bell", "flash"]

[[alerts]]
on = "feed-down"
after = "2m"
actions = ["bell", "flash", "exec"]
exec = ["notify-send", "feedtop: {feed} down", "{detail}"]

[[alerts]]
on = "quote-move"
symbols = ["PKN", "CDR"]
percent = 3.0
within = "15m"
actions = ["flash"]
"#;
        let file: File = toml::from_str(text).unwrap();
        let rules = Rules::check(&file.alerts, dir.path()).unwrap();
        assert_eq!(rules.0.len(), 3);
        match &rules.0[0].trigger {
            Trigger::StrikeOff { changes, companies: Companies::Numbers(n) } => {
                assert_eq!(changes, &[ChangeKind::Entered]);
                assert!(n.contains("SC571653") && n.contains("01234567") && n.len() == 2, "{n:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(rules.0[1].trigger, Trigger::FeedDown { after } if after == Duration::from_secs(120)));
        assert_eq!(rules.0[1].exec[0], "notify-send");
        assert!(rules.0[1].actions.exec && rules.0[1].actions.bell && !rules.0[2].actions.bell);
        assert!(matches!(&rules.0[2].trigger, Trigger::QuoteMove { percent, .. } if *percent == 3.0));
    }

    #[test]
    fn every_mistake_is_named_with_its_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.txt"), "01234567\n").unwrap();
        let head = "[[alerts]]\n";
        let cases: &[(&str, &str)] = &[
            ("on = \"strike\"\nactions = [\"bell\"]", "line 2: #1 on: unknown \"strike\""),
            (
                "on = \"strike-off\"\nchanges = [\"gone\"]\nactions = [\"bell\"]",
                "line 3: #1 changes: unknown change \"gone\"",
            ),
            ("on = \"strike-off\"\nactions = [\"beep\"]", "line 3: #1 actions: unknown action \"beep\""),
            ("on = \"strike-off\"\nactions = []", "line 3: #1 actions: is empty"),
            ("on = \"feed-down\"\nactions = [\"bell\"]", "line 2: #1 after: on = \"feed-down\" needs after"),
            (
                "on = \"feed-down\"\nafter = \"0s\"\nactions = [\"bell\"]",
                "line 3: #1 after: must be between 1s and 7d (got 0s)",
            ),
            ("on = \"feed-down\"\nafter = \"soon\"\nactions = [\"bell\"]", "line 3: #1 after: "),
            (
                "on = \"quote-move\"\nsymbols = [\"PKN\"]\npercent = 0.0\nwithin = \"15m\"\nactions = [\"flash\"]",
                "line 4: #1 percent: must be between 0.01 and 1000 (got 0)",
            ),
            (
                "on = \"quote-move\"\nsymbols = [\"PKN\"]\npercent = 3.0\nwithin = \"2d\"\nactions = [\"flash\"]",
                "line 5: #1 within: must be between 10s and 1d (got 2d)",
            ),
            (
                "on = \"quote-move\"\nsymbols = []\npercent = 3.0\nwithin = \"1m\"\nactions = [\"flash\"]",
                "line 3: #1 symbols: needs 1 to",
            ),
            (
                "on = \"feed-down\"\nafter = \"1m\"\nwithin = \"1m\"\nactions = [\"bell\"]",
                "line 4: #1 within: does not apply to on = \"feed-down\"",
            ),
            (
                "on = \"feed-down\"\nafter = \"1m\"\nactions = [\"bell\"]\nexec = [\"true\"]",
                "line 5: #1 exec: is set but actions does not list \"exec\"",
            ),
            (
                "on = \"feed-down\"\nafter = \"1m\"\nactions = [\"exec\"]",
                "line 4: #1 actions: lists \"exec\" without an exec",
            ),
            (
                "on = \"feed-down\"\nafter = \"1m\"\nactions = [\"exec\"]\nexec = [\"x\", \"{host}\"]",
                "line 5: #1 exec: unknown placeholder {host}",
            ),
            ("on = \"feed-down\"\nafter = \"1m\"\nactions = [\"exec\"]\nexec = []", "line 5: #1 exec: is empty"),
            (
                "on = \"strike-off\"\nname = \"(unclosed\"\nactions = [\"bell\"]",
                "line 3: #1 name: is not a valid regular expression",
            ),
            (
                "on = \"strike-off\"\nname = \"\\\\w{1000}{1000}\"\nactions = [\"bell\"]",
                "line 3: #1 name: is not a valid regular expression",
            ),
            (
                "on = \"strike-off\"\ncompanies = \"nope.txt\"\nactions = [\"bell\"]",
                "line 3: #1 companies: cannot read ",
            ),
            (
                "on = \"strike-off\"\ncompanies = \"big.txt\"\nname = \"x\"\nactions = [\"bell\"]",
                "line 4: #1 name: and companies both given",
            ),
        ];
        for (body, want) in cases {
            let got = refused(&format!("{head}{body}\n"), dir.path());
            assert!(got.starts_with(want), "{body:?}:\n got  {got}\n want {want}");
        }
        // A missing watch list names the file.
        let got =
            refused("[[alerts]]\non = \"strike-off\"\ncompanies = \"nope.txt\"\nactions = [\"bell\"]\n", dir.path());
        assert!(got.contains(&dir.path().join("nope.txt").display().to_string()), "{got}");
        // The second table is numbered 2.
        let two =
            "[[alerts]]\non = \"strike-off\"\nactions = [\"bell\"]\n[[alerts]]\non = \"x\"\nactions = [\"bell\"]\n";
        assert!(refused(two, dir.path()).starts_with("line 5: #2 on: "), "{}", refused(two, dir.path()));
    }

    #[test]
    fn a_watch_list_that_is_not_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| std::fs::write(dir.path().join("w.txt"), text).unwrap();
        let rule = "[[alerts]]\non = \"strike-off\"\ncompanies = \"w.txt\"\nactions = [\"bell\"]\n";
        write("\n# nothing\n");
        assert!(refused(rule, dir.path()).contains("lists no company numbers"));
        write("01234567\nrm -rf /\n");
        assert!(refused(rule, dir.path()).contains("w.txt line 2: \"rm -rf /\" is not a company number"));
        let big = std::fs::File::create(dir.path().join("w.txt")).unwrap();
        big.set_len(MAX_COMPANIES_FILE + 1).unwrap();
        assert!(refused(rule, dir.path()).contains("the most a watch list may be is"));
    }
}
