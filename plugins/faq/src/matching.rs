//! Matching a customer's message against keyword phrases: lowercase words, consecutive phrase
//! words, and one-typo tolerance for long single-word keywords.

/// The shortest single-word keyword (in characters) that also matches a message word one edit
/// away.
pub const FUZZY_MIN_CHARS: usize = 5;

/// The lowercase words of `text`: its runs of alphanumeric characters, in order.
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether `phrase` (a keyword's words, see [`words`]) occurs in `message` (a message's words):
/// its words appear consecutively, or, for a single word of at least [`FUZZY_MIN_CHARS`]
/// characters, some message word is within edit distance 1 of it. An empty phrase never matches.
pub fn phrase_matches(phrase: &[String], message: &[String]) -> bool {
    match phrase {
        [] => false,
        [word] if word.chars().count() >= FUZZY_MIN_CHARS => {
            message.iter().any(|m| within_one_edit(word, m))
        }
        _ => message.windows(phrase.len()).any(|window| window == phrase),
    }
}

/// Whether any of `phrases` matches `message` ([`phrase_matches`]).
pub fn any_matches(phrases: &[Vec<String>], message: &[String]) -> bool {
    phrases.iter().any(|p| phrase_matches(p, message))
}

/// Whether `a` and `b` are equal or one insertion, deletion or substitution (of a character)
/// apart (Levenshtein distance at most 1).
pub fn within_one_edit(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(&long).take_while(|(x, y)| x == y).count();
    if prefix == short.len() {
        return true;
    }
    if short.len() == long.len() {
        short[prefix + 1..] == long[prefix + 1..]
    } else {
        short[prefix..] == long[prefix + 1..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str) -> Vec<String> {
        words(text)
    }

    #[test]
    fn splits_into_lowercase_alphanumeric_runs() {
        assert_eq!(
            w("Where's my ORDER #123?!  Café"),
            ["where", "s", "my", "order", "123", "café"]
        );
        assert!(w(" ,.!? ").is_empty());
    }

    #[test]
    fn edit_distance_one() {
        assert!(within_one_edit("refund", "refund"));
        assert!(within_one_edit("refund", "refunf"));
        assert!(within_one_edit("refund", "refunds"));
        assert!(within_one_edit("refund", "efund"));
        assert!(within_one_edit("refund", "reffund"));
        assert!(within_one_edit("", "a"));
        assert!(!within_one_edit("refund", "rfnd"));
        assert!(!within_one_edit("refund", "refnud"));
        assert!(!within_one_edit("refund", "return"));
        assert!(within_one_edit("café", "cafe"));
    }

    #[test]
    fn phrases_match_consecutive_words() {
        let message = w("How do I reset my password please");
        assert!(phrase_matches(&w("reset my password"), &message));
        assert!(phrase_matches(&w("Reset, my password!"), &message));
        assert!(!phrase_matches(&w("reset password"), &message));
        assert!(!phrase_matches(&w("my reset"), &message));
        assert!(!phrase_matches(&[], &message));
        assert!(!phrase_matches(&w("reset"), &[]));
    }

    #[test]
    fn long_single_words_tolerate_one_typo() {
        assert!(phrase_matches(&w("password"), &w("forgot my pasword")));
        assert!(phrase_matches(&w("hours"), &w("opening hour?")));
        // Four characters is too short for typos.
        assert!(!phrase_matches(&w("ship"), &w("shop")));
        assert!(phrase_matches(&w("ship"), &w("ship it")));
        // Several-word keywords never match fuzzily.
        assert!(!phrase_matches(&w("opening hours"), &w("openin hours")));
        // Only whole words count.
        assert!(!phrase_matches(&w("refund"), &w("refundable")));
        assert!(any_matches(&[w("agent"), w("human")], &w("a humam please")));
        assert!(!any_matches(&[], &w("anything")));
    }
}
