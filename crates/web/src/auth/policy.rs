//! What a password must be: long enough (a passphrase is fine), not one of the passwords every
//! attacker tries first, and not a trivial pattern (NIST SP 800-63B §3.1.1.2: check new
//! passwords against commonly used and expected values).

use std::collections::HashSet;
use std::sync::LazyLock;

pub const MIN_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 1024;

/// The 5,000 most common passwords of a public list of leaked ones (see the file's header).
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("common_passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
});

/// Runs of characters that people type in order: alphabets, digits, keyboard rows.
const RUNS: &[&str] = &[
    "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
    "01234567890123456789012345678901234567890",
    "qwertyuiopasdfghjklzxcvbnm",
    "qwertzuiopasdfghjklyxcvbnm",
    "azertyuiopqsdfghjklmwxcvbn",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "!@#$%^&*()_+",
];

/// Why `password` is refused for the account `name`, in words; `None` when it is fine.
pub fn problem(password: &str, name: &str) -> Option<String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Some(format!(
            "the password is too short: use at least {MIN_PASSWORD_LEN} characters (a passphrase of a few words is fine)"
        ));
    }
    if n > MAX_PASSWORD_LEN {
        return Some(format!(
            "the password is too long: use at most {MAX_PASSWORD_LEN} characters"
        ));
    }
    let lower = password.to_lowercase();
    if !name.is_empty() && lower.contains(&name.to_lowercase()) {
        return Some("the password contains the account name: choose one that does not".into());
    }
    // "Password2024!" is "password" with what everyone appends.
    let core = lower.trim_end_matches(|c: char| !c.is_alphabetic());
    let core = core.trim_start_matches(|c: char| !c.is_alphabetic());
    if COMMON.contains(lower.as_str()) || (core.chars().count() >= 4 && COMMON.contains(core)) {
        return Some(
            "this password is one of the most common ones, which attackers try first: choose another (a few unrelated words make a good one)".into(),
        );
    }
    if is_trivial(&lower) || (core.chars().count() >= 4 && is_trivial(core)) {
        return Some(
            "this password is a trivial pattern (one character repeated, a sequence or a keyboard row): choose another".into(),
        );
    }
    None
}

/// Few distinct characters ("aaaaaaaaaaaa", "abababababab"), a short unit repeated
/// ("passwordpassword" counts through its unit), or a run from [`RUNS`] (either way).
fn is_trivial(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let distinct: HashSet<char> = chars.iter().copied().collect();
    if distinct.len() < 4 {
        return true;
    }
    for period in 1..=chars.len() / 2 {
        if chars.len().is_multiple_of(period) && chars.chunks(period).all(|c| c == &chars[..period])
        {
            let unit: String = chars[..period].iter().collect();
            return period <= 4 || COMMON.contains(unit.as_str()) || is_trivial(&unit);
        }
    }
    let reversed: String = chars.iter().rev().collect();
    RUNS.iter()
        .any(|run| run.contains(s) || run.contains(reversed.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_common_and_trivial_passwords() {
        for bad in [
            "short",
            "password1234",
            "Password2024!",
            "qwertyuiop12",
            "iloveyou2024",
            "1234567890123",
            "aaaaaaaaaaaaaa",
            "abababababab",
            "abcdefghijklmn",
            "zyxwvutsrqpon",
            "qwertyuiopasdf",
            "passwordpassword",
            "alice-is-the-best",
        ] {
            assert!(problem(bad, "alice").is_some(), "{bad} was accepted");
        }
    }

    #[test]
    fn accepts_passphrases_and_random_passwords() {
        for good in [
            "correct horse battery staple",
            "Tr0ub4dor&3-wingspan",
            "kQ7#vN2pLx9!",
            "n8fT3qZ1vB6m",
        ] {
            assert_eq!(problem(good, "alice"), None, "{good} was refused");
        }
    }

    #[test]
    fn the_list_is_compiled_in() {
        assert!(COMMON.len() >= 4000);
        assert!(COMMON.contains("password"));
    }
}
