//! PII detectors: emails, phone numbers, payment cards (Luhn), IBANs (mod-97), US SSNs,
//! IPv4/IPv6 addresses.
//!
//! Each detector is a permissive pattern followed by a validity check (checksum, number
//! ranges, address parsing), because patterns alone flag every long digit run: a random
//! 16-digit number passes Luhn one time in ten, an IBAN-shaped string mod-97 one in 97.

use regex::Regex;
use serde::Serialize;
use std::sync::OnceLock;

/// The kinds of PII we look for, as named in `privacy.json` and the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Email,
    Phone,
    CreditCard,
    Iban,
    UsSsn,
    Ipv4,
    Ipv6,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Email,
        Kind::Phone,
        Kind::CreditCard,
        Kind::Iban,
        Kind::UsSsn,
        Kind::Ipv4,
        Kind::Ipv6,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::CreditCard => "credit_card",
            Kind::Iban => "iban",
            Kind::UsSsn => "us_ssn",
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
        }
    }

    /// What a redacted span becomes.
    pub fn placeholder(self) -> &'static str {
        match self {
            Kind::Email => "[EMAIL]",
            Kind::Phone => "[PHONE]",
            Kind::CreditCard => "[CREDIT_CARD]",
            Kind::Iban => "[IBAN]",
            Kind::UsSsn => "[US_SSN]",
            Kind::Ipv4 => "[IPV4]",
            Kind::Ipv6 => "[IPV6]",
        }
    }
}

/// One detected span (byte offsets into the scanned text).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    pub text: String,
}

struct Patterns {
    email: Regex,
    phone: Regex,
    phone_bare: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    ipv4: Regex,
    ipv6: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("built-in PII pattern");
        Patterns {
            email: re(r"(?i)\b[a-z0-9][a-z0-9._%+-]*@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,24}\b"),
            // +CC international, (555) 123-4567, (555)1234567, 555-123-4567 or 555-1234567;
            // digits counted after.
            phone: re(r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}\b|\(\d{3}\)[ .-]?\d{3}[ .-]?\d{4}\b|\b\d{3}[ .-]\d{3}[ .-]?\d{4}\b"),
            // Without separators only a North American number is recognizable: optional
            // 1, then area and exchange codes that start with 2–9. (A bare 10-digit run is
            // otherwise as likely an order number or a Unix time, which starts with 1.)
            phone_bare: re(r"\b1?[2-9]\d{2}[2-9]\d{6}\b"),
            card: re(r"\b\d(?:[ -]?\d){12,18}\b"),
            iban: re(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
            ssn: re(r"\b(\d{3})-(\d{2})-(\d{4})\b"),
            ipv4: re(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
            ipv6: re(r"(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?:%[0-9a-z]+)?"),
        }
    })
}

/// Luhn checksum over the digits of `s`.
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 2 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Issuer prefixes and lengths of the major card networks (Visa, Mastercard, Amex,
/// Discover, JCB, Diners, UnionPay, Maestro): with Luhn this keeps random numbers out.
fn card_network(digits: &str) -> bool {
    let n = digits.len();
    let p = |k: usize| digits[..k.min(n)].parse::<u32>().unwrap_or(0);
    match digits.as_bytes()[0] {
        b'4' => matches!(n, 13 | 16 | 19),
        b'5' => (51..=55).contains(&p(2)) && n == 16 || (50..=59).contains(&p(2)) && n >= 12,
        b'2' => (2221..=2720).contains(&p(4)) && n == 16,
        b'3' => {
            (matches!(p(2), 34 | 37) && n == 15)
                || ((3528..=3589).contains(&p(4)) && (16..=19).contains(&n))
                || ((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39)) && n >= 14
        }
        b'6' => {
            (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) || p(2) == 62)
                && (16..=19).contains(&n)
                || matches!(p(2), 60 | 63 | 67) && (12..=19).contains(&n)
        }
        _ => false,
    }
}

/// ISO 13616 IBAN lengths by country (the common ones; others only need 15–34).
fn iban_length(country: &str) -> Option<usize> {
    Some(match country {
        "AD" => 24,
        "AT" => 20,
        "BE" => 16,
        "BG" => 22,
        "CH" => 21,
        "CY" => 28,
        "CZ" => 24,
        "DE" => 22,
        "DK" => 18,
        "EE" => 20,
        "ES" => 24,
        "FI" => 18,
        "FR" => 27,
        "GB" => 22,
        "GR" => 27,
        "HR" => 21,
        "HU" => 28,
        "IE" => 22,
        "IS" => 26,
        "IT" => 27,
        "LI" => 21,
        "LT" => 20,
        "LU" => 20,
        "LV" => 21,
        "MC" => 27,
        "MT" => 31,
        "NL" => 18,
        "NO" => 15,
        "PL" => 28,
        "PT" => 25,
        "RO" => 24,
        "SE" => 24,
        "SI" => 19,
        "SK" => 24,
        "SM" => 27,
        "TR" => 26,
        _ => return None,
    })
}

/// IBAN validity: length for its country and the ISO 7064 mod-97 check.
pub fn iban_valid(s: &str) -> bool {
    let c: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&c.len()) || !c.is_ascii() {
        return false;
    }
    if let Some(len) = iban_length(&c[..2]) {
        if c.len() != len {
            return false;
        }
    }
    let rotated = c[4..].chars().chain(c[..4].chars());
    let mut rem: u32 = 0;
    for ch in rotated {
        let v = match ch.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    rem == 1
}

/// US SSN rules: area 001–899 except 666, group 01–99, serial 0001–9999.
fn ssn_valid(area: &str, group: &str, serial: &str) -> bool {
    let a: u32 = area.parse().unwrap_or(0);
    a != 0 && a != 666 && a < 900 && group != "00" && serial != "0000"
}

/// Every PII span in `text`, sorted by position; overlaps resolve to the earlier, longer,
/// more specific hit (a card number is not also reported as a phone number).
pub fn scan(text: &str) -> Vec<Hit> {
    let p = patterns();
    let mut hits = Vec::new();
    let mut push = |kind, m: regex::Match| {
        hits.push(Hit {
            kind,
            start: m.start(),
            end: m.end(),
            text: m.as_str().to_string(),
        })
    };
    for m in p.email.find_iter(text) {
        push(Kind::Email, m);
    }
    for m in p.card.find_iter(text) {
        let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
        if luhn(&digits) && card_network(&digits) {
            push(Kind::CreditCard, m);
        }
    }
    for m in p.iban.find_iter(text) {
        if iban_valid(m.as_str()) {
            push(Kind::Iban, m);
        }
    }
    for c in p.ssn.captures_iter(text) {
        if ssn_valid(&c[1], &c[2], &c[3]) {
            push(Kind::UsSsn, c.get(0).expect("whole match"));
        }
    }
    for m in p.ipv4.find_iter(text) {
        if m.as_str().parse::<std::net::Ipv4Addr>().is_ok() && !part_of_longer_number(text, &m) {
            push(Kind::Ipv4, m);
        }
    }
    for m in p.ipv6.find_iter(text) {
        if !standalone(text, &m) {
            continue;
        }
        let s = m.as_str().split('%').next().unwrap_or("");
        let hexes = s.chars().filter(char::is_ascii_hexdigit).count();
        if s.len() >= 6 && hexes >= 4 && s.parse::<std::net::Ipv6Addr>().is_ok() {
            push(Kind::Ipv6, m);
        }
    }
    for m in p.phone.find_iter(text) {
        let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
        let intl = m.as_str().starts_with('+');
        if (10..=15).contains(&digits) || (intl && digits >= 8) {
            push(Kind::Phone, m);
        }
    }
    for m in p.phone_bare.find_iter(text) {
        push(Kind::Phone, m);
    }
    // Earlier first; at the same start the longer; then the order pushed (specific first).
    hits.sort_by_key(|h| (h.start, std::cmp::Reverse(h.end)));
    let mut out: Vec<Hit> = Vec::with_capacity(hits.len());
    for h in hits {
        if out.last().is_some_and(|l| h.start < l.end) {
            continue;
        }
        out.push(h);
    }
    out
}

/// The pattern has no word boundary of its own (an address may start with `::`), so the
/// characters around the match decide: `deadbeef::1` or `cabbage::bad` hold no address.
/// A full stop after the address ends a sentence; one before a letter or digit continues
/// a word.
fn standalone(text: &str, m: &regex::Match) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut after = text[m.end()..].chars();
    let next = after.next();
    let continues = next.is_some_and(word)
        || (next == Some('.') && after.next().is_some_and(char::is_alphanumeric));
    let before = text[..m.start()].chars().next_back();
    !continues && !before.is_some_and(|c| word(c) || c == '.')
}

/// Dotted numbers inside longer dotted runs (`1.2.3.4.5`, version strings) are not addresses.
fn part_of_longer_number(text: &str, m: &regex::Match) -> bool {
    let b = text.as_bytes();
    let before = m.start() > 0 && b[m.start() - 1] == b'.';
    let after = m.end() + 1 < b.len() && b[m.end()] == b'.' && b[m.end() + 1].is_ascii_digit();
    before || after
}

/// `text` with every hit replaced by its kind's placeholder.
pub fn redact(text: &str, hits: &[Hit]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for h in hits {
        if h.start < pos {
            continue;
        }
        out.push_str(&text[pos..h.start]);
        out.push_str(h.kind.placeholder());
        pos = h.end;
    }
    out.push_str(&text[pos..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, String)> {
        scan(text).into_iter().map(|h| (h.kind, h.text)).collect()
    }

    /// The detector table: each row is a text and exactly what must be found in it.
    #[test]
    fn detector_table() {
        use Kind::*;
        let table: Vec<(&str, Vec<(Kind, &str)>)> = vec![
            (
                "write to jane.doe+tax@example.co.uk today",
                vec![(Email, "jane.doe+tax@example.co.uk")],
            ),
            ("user@localhost is not a routable address", vec![]),
            (
                "call (555) 123-4567 or +44 20 7946 0958",
                vec![(Phone, "(555) 123-4567"), (Phone, "+44 20 7946 0958")],
            ),
            ("dial 555-123-4567 now", vec![(Phone, "555-123-4567")]),
            ("+4915112345678", vec![(Phone, "+4915112345678")]),
            ("the years 1999-2004 were good", vec![]),
            (
                "card 4111 1111 1111 1111 exp 12/29",
                vec![(CreditCard, "4111 1111 1111 1111")],
            ),
            (
                "amex 378282246310005.",
                vec![(CreditCard, "378282246310005")],
            ),
            (
                "mc 5555-5555-5555-4444",
                vec![(CreditCard, "5555-5555-5555-4444")],
            ),
            ("not a card: 4111 1111 1111 1112", vec![]),
            ("order 1234567812345678 shipped", vec![]),
            (
                "IBAN GB82 WEST 1234 5698 7654 32 please",
                vec![(Iban, "GB82 WEST 1234 5698 7654 32")],
            ),
            (
                "DE89370400440532013000",
                vec![(Iban, "DE89370400440532013000")],
            ),
            ("bad IBAN GB82 WEST 1234 5698 7654 33", vec![]),
            ("SSN 123-45-6789 on file", vec![(UsSsn, "123-45-6789")]),
            (
                "ids 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567",
                vec![],
            ),
            (
                "server at 192.168.1.20 and 10.0.0.1.",
                vec![(Ipv4, "192.168.1.20"), (Ipv4, "10.0.0.1")],
            ),
            ("version 1.2.3.4.5 and 300.1.1.1", vec![]),
            (
                "v6 2001:db8:85a3::8a2e:370:7334 ok",
                vec![(Ipv6, "2001:db8:85a3::8a2e:370:7334")],
            ),
            (
                "fe80::1ff:fe23:4567:890a%eth0",
                vec![(Ipv6, "fe80::1ff:fe23:4567:890a%eth0")],
            ),
            ("at 12:30:45 the ratio was 3:2", vec![]),
            // Inside hex words there is no address (each of these parses as IPv6 alone).
            ("hash deadbeef::1 and cabbage::bad and feed::face0x", vec![]),
            ("loopback ::1 and fe80::1.", vec![(Ipv6, "fe80::1")]),
            // Without separators: North American numbers, with or without the 1.
            (
                "call 5552345678 or 15552345678 or (555)1234567 or 555-1234567",
                vec![
                    (Phone, "5552345678"),
                    (Phone, "15552345678"),
                    (Phone, "(555)1234567"),
                    (Phone, "555-1234567"),
                ],
            ),
            // …but not Unix times, order numbers or codes that start with 0 or 1.
            ("at 1700000000 order 0123456789 ref 1234567890", vec![]),
            ("A volcano is a mountain that erupts lava.", vec![]),
        ];
        for (text, want) in table {
            let want: Vec<(Kind, String)> =
                want.into_iter().map(|(k, s)| (k, s.to_string())).collect();
            assert_eq!(kinds(text), want, "in {text:?}");
        }
    }

    #[test]
    fn checksums() {
        assert!(luhn("79927398713"));
        assert!(!luhn("79927398710"));
        assert!(iban_valid("NL91ABNA0417164300"));
        assert!(!iban_valid("NL91ABNA041716430"), "wrong length for NL");
        assert!(iban_valid("FR1420041010050500013M02606"));
    }

    #[test]
    fn redaction_replaces_spans_only() {
        let t = "mail a@b.io or call 555-123-4567.";
        assert_eq!(redact(t, &scan(t)), "mail [EMAIL] or call [PHONE].");
        assert_eq!(
            redact("nothing here", &scan("nothing here")),
            "nothing here"
        );
    }
}
